import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LuaVm } from '../../src/script/lua-vm.js';
import { compileChunk } from '../../src/script/compile.js';
import { globalUse, type GlobalUse } from '../../src/script/global-use.js';
import type { SessionFacts } from '../../src/smtp/hooks.js';
import { initialPolicy } from '../../src/smtp/session-policy.js';
import { startScriptHost } from '../helpers/script-host.js';

const vm = await LuaVm.create();

function use(source: string, strip = false): GlobalUse | null {
  const r = compileChunk(vm, Buffer.from(source), '@t.lua', strip);
  assert.ok('bytecode' in r, 'compiles');
  return globalUse(r.bytecode);
}

const sorted = (s: ReadonlySet<string>): string[] => [...s].sort();

test('global use: names read and written in every function of the chunk, however deep', () => {
  for (const strip of [false, true]) {
    const u = use(
      `local limit = 5
       function DoRCPTTO(data, rcpt)
         local function deeper() return function() ForceDisconnect = MailFrom == "" end end
         deeper()()
         return tostring(limit), IPAddress
       end`,
      strip,
    );
    assert.ok(u);
    assert.equal(u.dynamic, false);
    assert.deepEqual(sorted(u.named), ['DoRCPTTO', 'ForceDisconnect', 'IPAddress', 'MailFrom', 'tostring']);
    assert.deepEqual(sorted(u.written), ['DoRCPTTO', 'ForceDisconnect']);
  }
});

test('global use: a local or parameter called _ENV is not the globals table', () => {
  const u = use('local _ENV = {} MaxLineLength = 1 function f(_ENV) ForceDisconnect = true end');
  assert.ok(u);
  assert.equal(u.dynamic, false);
  assert.deepEqual(sorted(u.named), []);
});

test('global use: any way to the globals table other than a constant name makes the script dynamic', () => {
  const cases = [
    'local e = _ENV e.MaxLineLength = 1',
    'function f() _ENV = {} end',
    '_G.ForceDisconnect = true',
    'x = load("ForceDisconnect = true")',
    'x = loadstring("ForceDisconnect = true")',
    'local m = require "helpers"',
    'function f() return function() return getfenv(1) end end',
    // A name longer than a short string is indexed at run time.
    `${'L'.repeat(60)} = 1`,
    // Past 255 constants a name is no longer an operand of GETTABUP.
    `local t = { ${Array.from({ length: 300 }, (_, i) => `"k${i}"`).join(', ')} } ForceDisconnect = true`,
  ];
  for (const c of cases) assert.equal(use(c)?.dynamic, true, c.slice(0, 60));
});

test('global use: bytes that are not a Lua 5.4 dump give no answer', () => {
  const good = compileChunk(vm, Buffer.from('X = 1'), '@t.lua');
  assert.ok('bytecode' in good);
  assert.equal(globalUse(Buffer.from('X = 1')), null);
  assert.equal(globalUse(good.bytecode.subarray(0, good.bytecode.length - 3)), null);
  assert.equal(globalUse(Buffer.concat([good.bytecode, Buffer.from([0])])), null);
});

// The host's side: what it pushes and reads back follows the analysis, and a script that
// reaches the globals table another way still has its changes taken.
const factsFrom = (from: () => string) => (): SessionFacts => ({ ip: '127.0.0.2', sessionId: 'S1', serviceId: 0, serviceName: 'smtp', authUser: '', tls: '', helo: 'h', mailFrom: from(), rblResultInfo: {} });

test('script globals: written through a closure, and read after the host changes them', async () => {
  const s = await startScriptHost(`
    local function drop() ForceDisconnect = true end
    function DoNOOP() drop() return "" end
    function DoRCPTTO(data, rcpt) return nil, "250 from " .. MailFrom end`);
  try {
    const policy = initialPolicy(s.config);
    let from = 'a@one.test';
    const hooks = s.host.sessionHooks(policy, factsFrom(() => from), s.log)!;
    assert.equal(hooks.rcptTo('', 'u@x.test', {}, []).reply?.lines[0], 'from a@one.test');
    from = 'b@two.test';
    assert.equal(hooks.rcptTo('', 'u@x.test', {}, []).reply?.lines[0], 'from b@two.test');
    hooks.simple('NOOP');
    assert.equal(policy.forceDisconnect, true);
    hooks.end();
  } finally {
    s.close();
  }
});

test('script globals: written through _G with a name made at run time', async () => {
  const s = await startScriptHost(`function DoRSET() _G["Max" .. "LineLength"] = 1234 return "" end`);
  try {
    const policy = initialPolicy(s.config);
    const hooks = s.host.sessionHooks(policy, factsFrom(() => ''), s.log)!;
    hooks.simple('RSET');
    assert.equal(policy.maxLineLength, 1234);
    hooks.end();
  } finally {
    s.close();
  }
});

test('script globals: a script that names no IN/OUT global keeps the host policy as it is', async () => {
  const s = await startScriptHost(`
    local n = 0
    function DoNOOP() n = n + 1 return "250 noop " .. n end`);
  try {
    const policy = initialPolicy(s.config);
    const before = JSON.stringify(policy);
    const hooks = s.host.sessionHooks(policy, factsFrom(() => ''), s.log)!;
    assert.equal(hooks.simple('NOOP')?.lines[0], 'noop 1');
    policy.forceDisconnect = true;
    assert.equal(hooks.simple('NOOP')?.lines[0], 'noop 2');
    assert.equal(policy.forceDisconnect, true);
    policy.forceDisconnect = false;
    assert.equal(JSON.stringify(policy), before);
    hooks.end();
  } finally {
    s.close();
  }
});
