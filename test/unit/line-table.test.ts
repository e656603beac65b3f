import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LuaVm, LUA_MULTRET } from '../../src/script/lua-vm.js';
import { LuaState } from '../../src/script/lua-state.js';
import { STAGE, lineTableFunction } from '../../src/script/line-table.js';

const vm = await LuaVm.create();

/** The table the function made by `make` for a descriptor makes of `block`, read back as strings. */
function linesOf(make: (desc: number) => (L: number) => number, block: Buffer): string[] {
  const m = vm.m;
  const st = new LuaState(vm, 16 * 1024 * 1024, '=lines');
  const desc = m._malloc(STAGE.size);
  const buf = m._malloc(block.length + 1);
  const index = m.addFunction(make(desc), 'ii');
  try {
    m.HEAPU8.set(block, buf);
    m.HEAPU32[(desc + STAGE.ptr) >> 2] = buf;
    m.HEAPU32[(desc + STAGE.len) >> 2] = block.length;
    m.HEAPU32[(desc + STAGE.count) >> 2] = 3;
    m._lua_pushcclosure(st.L, index, 0);
    assert.equal(m._lua_pcallk(st.L, 0, LUA_MULTRET, 0, 0, 0), 0);
    const t = st.read(-1, 0, true);
    m._lua_settop(st.L, 0);
    // An empty table reads back as an empty object.
    const lines = Array.isArray(t) ? t : Object.keys(t as object).length === 0 ? [] : assert.fail(`not a list: ${String(t)}`);
    return (lines as Buffer[]).map((b) => b.toString('latin1'));
  } finally {
    m.removeFunction(index);
    m._free(buf);
    m._free(desc);
    st.close();
  }
}

test('the wasm line-table function and its JS fallback cut a block alike', () => {
  assert.ok(vm.rawExports, 'the raw exports were caught');
  const cases = [
    'one\r\ntwo\r\n',
    '\r\n\r\n\r\n',
    'bare\rcr\r\nlf only\nend\r\r\n',
    `${'x'.repeat(70_000)}\r\nshort\r\n`,
    'no line end at all',
    '',
  ];
  // Lines of every length around the 16-byte steps of the wasm scan, CR and LF at any place.
  let seed = 5;
  const next = (): number => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  for (let i = 0; i < 200; i++) {
    let text = '';
    for (let j = 0, n = Math.floor(next() * 12); j < n; j++) text += 'abcdefghij'.repeat(4).slice(0, Math.floor(next() * 40)) + (next() < 0.5 ? '\r\n' : next() < 0.5 ? '\n' : '\r');
    cases.push(text);
  }
  // The assembled function, not the fallback (a wasm export shows native code).
  assert.match(String(lineTableFunction(vm.rawExports, vm.m, 0)), /native code/);
  for (const text of cases) {
    const block = Buffer.from(text, 'latin1');
    const want = text.split('\n').slice(0, -1).map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
    assert.deepEqual(linesOf((desc) => lineTableFunction(vm.rawExports, vm.m, desc), block), want, `wasm: ${JSON.stringify(text.slice(0, 40))}`);
    assert.deepEqual(linesOf((desc) => lineTableFunction(null, vm.m, desc), block), want, `JS: ${JSON.stringify(text.slice(0, 40))}`);
  }
});
