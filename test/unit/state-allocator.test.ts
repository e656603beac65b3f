import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LuaVm } from '../../src/script/lua-vm.js';
import { UD } from '../../src/script/state-allocator.js';
import { assemble } from '../../src/script/wasm-asm.js';

const vm = await LuaVm.create();
const arena = vm.arena!;
const m = vm.m;

/** A fresh user data block: accounting zeroed, with `cap` bytes and the cap binding or not. */
function newUd(cap = 0x7fffffff, enforce = false): number {
  const ud = m._malloc(UD.size);
  m.HEAPU8.fill(0, ud, ud + UD.size);
  m.HEAP32[(ud + UD.cap) >> 2] = cap;
  m.HEAP32[(ud + UD.enforce) >> 2] = enforce ? 1 : 0;
  return ud;
}
const field = (ud: number, off: number): number => m.HEAP32[(ud + off) >> 2];

/** A tiny deterministic generator, so a failure repeats. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

test('the arena keeps every live block intact and 8-byte aligned through random alloc, realloc and free, and counts bytes as Lua does', () => {
  assert.ok(arena, 'the wasm allocator is available');
  const ud = newUd();
  const rand = rng(7);
  const live = new Map<number, { size: number; tag: number }>();
  const fill = (p: number, size: number, tag: number): void => {
    m.HEAPU8.fill(tag, p, p + size);
  };
  const check = (p: number, size: number, tag: number): void => {
    const view = m.HEAPU8.subarray(p, p + size);
    for (let i = 0; i < size; i++) if (view[i] !== tag) assert.fail(`block at ${p} (${size} bytes) corrupted at byte ${i}`);
  };
  let tag = 1;
  for (let step = 0; step < 20000; step++) {
    const r = rand();
    const sizes = [1 + Math.floor(rand() * 64), 1 + Math.floor(rand() * 520), 1 + Math.floor(rand() * 4000)];
    const size = sizes[Math.floor(rand() * 3)];
    if (r < 0.45 || live.size === 0) {
      const p = arena.alloc(ud, 0, 4 /* a type tag, not a size */, size);
      assert.ok(p && p % 8 === 0, `alloc(${size}) gave ${p}`);
      tag = (tag % 250) + 1;
      fill(p, size, tag);
      live.set(p, { size, tag });
    } else {
      const keys = [...live.keys()];
      const p = keys[Math.floor(rand() * keys.length)];
      const b = live.get(p)!;
      check(p, b.size, b.tag);
      live.delete(p);
      if (r < 0.75) {
        assert.equal(arena.alloc(ud, p, b.size, 0), 0);
      } else {
        const q = arena.alloc(ud, p, b.size, size);
        assert.ok(q && q % 8 === 0);
        // The old contents moved with the block, as far as both sizes reach.
        check(q, Math.min(b.size, size), b.tag);
        fill(q, size, b.tag);
        live.set(q, { size, tag: b.tag });
      }
    }
    if (step % 1000 === 0) for (const [p, b] of live) check(p, b.size, b.tag);
  }
  let sum = 0;
  for (const [p, b] of live) {
    check(p, b.size, b.tag);
    sum += b.size;
  }
  assert.equal(field(ud, UD.used), sum);
  arena.drop(ud);
  m._free(ud);
});

test('while the cap binds, growth past it is refused and flagged, a shrink never fails, and the arena cannot grow past the cap by churning size classes', () => {
  const ud = newUd(64 * 1024, true);
  const big = arena.alloc(ud, 0, 0, 60 * 1024);
  assert.ok(big);
  assert.equal(arena.alloc(ud, 0, 0, 8 * 1024), 0);
  assert.equal(field(ud, UD.hit), 1);
  m.HEAP32[(ud + UD.hit) >> 2] = 0;
  // Shrinking a large block to a small one while the arena has no chunk left under the cap.
  const small = arena.alloc(ud, big, 60 * 1024, 100);
  assert.ok(small);
  assert.equal(field(ud, UD.used), 100);
  assert.equal(arena.alloc(ud, small, 100, 0), 0);
  // Fill the arena with one class, free it all, then ask for another class: the chunks held
  // count against the cap, so the second class cannot take as much again.
  const blocks: number[] = [];
  for (;;) {
    const p = arena.alloc(ud, 0, 0, 16);
    if (!p) break;
    blocks.push(p);
  }
  assert.ok(blocks.length > 1000, `${blocks.length}`);
  assert.ok(field(ud, UD.footprint) <= 64 * 1024);
  for (const p of blocks) arena.alloc(ud, p, 16, 0);
  assert.equal(field(ud, UD.used), 0);
  let other = 0;
  while (arena.alloc(ud, 0, 0, 200)) other++;
  assert.ok(other * 200 < 16 * 1024, `${other} blocks of 200 bytes fit beside the held chunks`);
  // Outside the script's own calls the cap does not bind.
  m.HEAP32[(ud + UD.enforce) >> 2] = 0;
  assert.ok(arena.alloc(ud, 0, 0, 200));
  arena.drop(ud);
  m._free(ud);
});

test('dropping a state gives its memory back to the module: the same states made again need no more heap', () => {
  const cycle = (): void => {
    const ud = newUd();
    for (let i = 0; i < 5000; i++) arena.alloc(ud, 0, 0, 1 + (i % 700));
    arena.drop(ud);
    m._free(ud);
  };
  cycle();
  const heap = m.HEAPU8.length;
  for (let i = 0; i < 200; i++) cycle();
  assert.equal(m.HEAPU8.length, heap);
});

test('the assembler names the function and line of a mistake', () => {
  const mod = (body: string) => ({ memory: ['e', 'm'] as [string, string], imports: [], functions: [{ name: 'f', params: ['x'], body }] });
  assert.throws(() => assemble(mod('local.get $x\ni32.frobnicate')), /f line 2 "i32.frobnicate": unknown instruction/);
  assert.throws(() => assemble(mod('local.get $y')), /f line 1 "local.get \$y": unknown local/);
  assert.throws(() => assemble(mod('block $a\nbr $b\nend')), /unknown label/);
  assert.throws(() => assemble(mod('block $a')), /not closed/);
  // A correct module validates and runs.
  const bytes = assemble({
    memory: ['e', 'm'],
    imports: [],
    functions: [{ name: 'twice', exported: true, params: ['x'], result: 'i32', body: 'local.get $x\nlocal.get $x\ni32.add' }],
  });
  const inst = new WebAssembly.Instance(new WebAssembly.Module(bytes), { e: { m: new WebAssembly.Memory({ initial: 1 }) } });
  assert.equal((inst.exports.twice as (x: number) => number)(21), 42);
});

test('the collector of a new state waits for the script: stopped while the sandbox is built, running from the first script call on', async () => {
  const { LuaState } = await import('../../src/script/lua-state.js');
  const st = new LuaState(vm, 8 * 1024 * 1024, '=gc');
  try {
    const r = st.loadAndRun(
      Buffer.from(`running = collectgarbage('isrunning')
        for i = 1, 300000 do local t = { i, tostring(i) } end`),
      '=gc',
      't',
      { timeMs: 10_000, instructions: Infinity },
    );
    assert.equal(r.kind, 'ok');
    assert.equal(st.getGlobal('running'), true);
    // 300,000 tables and strings of garbage would need far more than this without collection.
    assert.ok(st.memoryUsed < 2 * 1024 * 1024, `${st.memoryUsed}`);
  } finally {
    st.close();
  }
});
