import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';

test('a young-generation collection follows every YOUNG_GC_EVERY bytes read, when V8 exposes gc', async () => {
  const calls: unknown[] = [];
  const g = globalThis as { gc?: unknown };
  const before = g.gc;
  g.gc = (options: unknown): void => {
    calls.push(options);
  };
  try {
    // A fresh instance of the module (another URL), which takes gc as it loads.
    const fresh = '../../src/util/young-gc.js?with-gc';
    const { noteBytesRead, YOUNG_GC_EVERY } = (await import(fresh)) as typeof import('../../src/util/young-gc.js');
    noteBytesRead(YOUNG_GC_EVERY - 1);
    assert.equal(calls.length, 0);
    noteBytesRead(1);
    assert.deepEqual(calls, [{ type: 'minor', execution: 'sync' }]);
    for (let i = 0; i < 10; i++) noteBytesRead(YOUNG_GC_EVERY / 4);
    assert.equal(calls.length, 3);
  } finally {
    g.gc = before;
  }
});

test('without --expose-gc nothing is collected, and with it V8 takes the options used', async () => {
  const { noteBytesRead, YOUNG_GC_EVERY } = await import('../../src/util/young-gc.js');
  // The test runner has no gc: counting goes on harmlessly.
  for (let i = 0; i < 3; i++) noteBytesRead(YOUNG_GC_EVERY);
  const out = execFileSync(process.execPath, ['--expose-gc', '--trace-gc', '-e', "gc({ type: 'minor', execution: 'sync' })"], { encoding: 'utf8' });
  assert.match(out, /Scavenge/);
  assert.doesNotMatch(out, /Mark-Compact/);
});
