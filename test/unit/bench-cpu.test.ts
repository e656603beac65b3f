import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { treeCpu } from '../../bench/proctree.js';

/** Spins until this process has used `ms` more CPU time (what it waits for is CPU, not the clock). */
function burn(ms: number): void {
  const start = process.cpuUsage();
  for (let x = 0; ; x++) {
    if (x % 10_000 === 0) {
      const d = process.cpuUsage(start);
      if ((d.user + d.system) / 1000 >= ms) return;
    }
  }
}

const total = (c: { userMs: number; sysMs: number }): number => c.userMs + c.sysMs;

test('treeCpu counts the CPU time of a running process', () => {
  const before = treeCpu([process.pid]);
  burn(300);
  const used = total(treeCpu([process.pid])) - total(before);
  assert.ok(used >= 250 && used < 5_000, `counted ${used} ms for 300 ms of CPU`);
});

test('treeCpu still counts a child that ended between two readings', async () => {
  const before = treeCpu([process.pid]);
  const child = spawn(process.execPath, ['-e', `const s = process.cpuUsage(); while (true) { const d = process.cpuUsage(s); if (d.user + d.system >= 400_000) break; }`], { stdio: 'ignore' });
  const [code] = await once(child, 'exit');
  assert.equal(code, 0);
  // The child is gone: only its parent's reaped-children times can hold its 400 ms.
  const used = total(treeCpu([process.pid])) - total(before);
  assert.ok(used >= 350, `counted ${used} ms for a child that used 400 ms`);
});

test('treeCpu of a process that is gone is zero, not an error', () => {
  assert.deepEqual(treeCpu([2 ** 22 + 12345]), { userMs: 0, sysMs: 0 });
});
