import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, dirname } from 'node:path';
import { patchCountHook } from '../../src/script/count-hook-patch.js';
import { LuaVm, countHookPatched } from '../../src/script/lua-vm.js';
import { LuaState } from '../../src/script/lua-state.js';

const vm = await LuaVm.create();
const glue = readFileSync(join(dirname(createRequire(import.meta.url).resolve('wasmoon')), 'glue.wasm'));

test('the installed wasmoon is the build the count-hook patch was written for, and the VM runs patched', () => {
  // A new wasmoon build turns the patch off (every instruction traps again): this says so.
  assert.equal(countHookPatched(), true);
});

test('the patch adds one valid function and leaves another build alone', () => {
  const patched = patchCountHook(glue);
  assert.ok(patched);
  assert.ok(WebAssembly.validate(patched));
  assert.ok(patched.length > glue.length && patched.length < glue.length + 200, `${glue.length} -> ${patched.length}`);
  const other = Buffer.from(glue);
  other[other.length - 1] ^= 1;
  assert.equal(patchCountHook(other), null);
});

function run(code: string, budget: { timeMs: number; instructions: number }): { r: ReturnType<LuaState['call']>; used: number } {
  const st = new LuaState(vm, 16 * 1024 * 1024, '=loop');
  try {
    const load = st.loadAndRun(Buffer.from(`function f()\n${code}\nend`), '=loop', 't');
    assert.equal(load.kind, 'ok', JSON.stringify(load));
    const r = st.call('f', [], budget);
    return { r, used: st.budget.instructions };
  } finally {
    st.close();
  }
}

// Every way a script can go round forever: each passes a point where Lua reloads its trap.
const RUNAWAYS = [
  'while true do end',
  'repeat until false',
  'for i = 1, math.huge do end',
  'for i = 1.0, math.huge do end',
  '::again:: goto again',
  'local function loop(n) return loop(n + 1) end return loop(0)',
  'for _ in function() return 1 end do end',
  'for _ in ipairs(setmetatable({}, { __index = function() return 1 end })) do end',
  'while true do local _ = math.abs(-1) end',
  'while true do pcall(error, "x") end',
  'while true do pcall(function() while true do end end) end',
  'local s = "" while true do s = s .. "x" if #s > 100 then s = "" end end',
  'coroutine.wrap(function() while true do end end)()',
  'local t = setmetatable({}, { __index = function(t, k) return t[k + 1] end }) return t[1]',
];

for (const code of RUNAWAYS) {
  test(`a runaway loop is stopped by the instruction budget and by the time budget: ${code}`, { timeout: 60_000 }, () => {
    const byCount = run(code, { timeMs: 60_000, instructions: 2_000_000 }).r;
    // The __index chain recurses through C and may hit Lua's C-stack limit first.
    if (byCount.kind === 'error') assert.match(byCount.message, /stack overflow|C stack/);
    else {
      assert.equal(byCount.kind, 'stopped', JSON.stringify(byCount));
      assert.equal((byCount as { stop: string }).stop, 'instructions');
    }
    const byTime = run(code, { timeMs: 100, instructions: Infinity }).r;
    if (byTime.kind === 'error') assert.match(byTime.message, /stack overflow|C stack/);
    else assert.equal((byTime as { stop: string }).stop, 'timeout', JSON.stringify(byTime));
  });
}

test('each turn of a loop counts at least one instruction, and a straight run its length', () => {
  // Two instructions a turn (ADD, FORLOOP): one to two counted, in steps of the hook's 1,000.
  const tight = run('local x = 0 for i = 1, 1000000 do x = x + i end return x', { timeMs: 60_000, instructions: Infinity });
  assert.equal(tight.r.kind, 'ok');
  assert.ok(tight.used >= 999_000 && tight.used <= 2_001_000, String(tight.used));
  // A function of 201 straight instructions (GETUPVAL and SETI a statement, and RETURN0),
  // called 10,000 times: counted from its call to its return.
  const body = Array.from({ length: 100 }, (_, i) => `t[${(i % 7) + 1}] = ${i}`).join(' ');
  const straight = run(`local t = {} local function g() ${body} end for i = 1, 10000 do g() end`, { timeMs: 60_000, instructions: Infinity });
  assert.equal(straight.r.kind, 'ok');
  assert.ok(straight.used >= 2_000_000 && straight.used <= 2_100_000, String(straight.used));
});

test('an error after the fast path names its own line', () => {
  const r = run('local n = 0\nfor i = 1, 1000 do n = n + i end\nlocal t = nil\nreturn t.x', { timeMs: 60_000, instructions: Infinity }).r;
  assert.equal(r.kind, 'error');
  assert.match((r as { message: string }).message, /^loop:5: attempt to index a nil value \(local 't'\)/);
});
