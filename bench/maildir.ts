/** Counting and emptying the Maildir `new` folder the benchmark messages land in. */
import { readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { sleep } from './proc.js';

/** Number of entries in the folder (0 if it does not exist yet). */
export async function countFiles(dir: string): Promise<number> {
  try {
    return (await readdir(dir)).length;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
}

export interface Arrival {
  count: number;
  /** Milliseconds from the call until the expected count was seen (null if it never was). */
  waitedMs: number | null;
}

/**
 * Polls until `expected` files are present, or until nothing new arrived for `idleMs`,
 * or `maxMs` passed, whichever comes first.
 */
export async function waitForCount(dir: string, expected: number, idleMs: number, maxMs: number): Promise<Arrival> {
  const t0 = Date.now();
  let last = -1;
  let lastChange = t0;
  for (;;) {
    const n = await countFiles(dir);
    const now = Date.now();
    if (n >= expected) return { count: n, waitedMs: now - t0 };
    if (n !== last) {
      last = n;
      lastChange = now;
    }
    if (now - lastChange >= idleMs || now - t0 >= maxMs) return { count: n, waitedMs: null };
    await sleep(50);
  }
}

/** Deletes the files in the folder but keeps the folder (servers may cache that it exists). */
export async function emptyDir(dir: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  const batch = 256;
  for (let i = 0; i < names.length; i += batch) {
    await Promise.all(names.slice(i, i + batch).map((n) => unlink(join(dir, n)).catch(() => undefined)));
  }
}
