import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

// Every host call into Lua loads a function from this object: in V8's dictionary mode each load
// is a hash lookup. A natives-syntax check, in a child process that allows it.
test('the Lua VM keeps its raw C API object in V8 fast mode', () => {
  const vmModule = fileURLToPath(new URL('../../src/script/lua-vm.ts', import.meta.url));
  const code = `
    const { LuaVm } = await import(${JSON.stringify(vmModule)});
    const vm = await LuaVm.create();
    const fast = new Function('o', 'return %HasFastProperties(o)');
    console.log(JSON.stringify({ fast: fast(vm.m), own: Object.keys(vm.m).length }));
  `;
  const out = execFileSync(process.execPath, ['--allow-natives-syntax', '--import', 'tsx', '--input-type=module', '-e', code], { encoding: 'utf8' });
  const r = JSON.parse(out.trim().split('\n').pop()!) as { fast: boolean; own: number };
  assert.ok(r.own > 100, `the raw exports were taken (${r.own})`);
  assert.equal(r.fast, true);
});
