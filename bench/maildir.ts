/** Counting and emptying the Maildir `new` folder the benchmark messages land in. */
import { mkdir, readdir, rename, stat, unlink } from 'node:fs/promises';
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

/**
 * Bytes of benchmark mail kept aside instead of deleted, in all: deleting 10,000 messages just
 * before a run made that run's servers pay for the bench's own cleanup (see bench/disk.ts;
 * measured: 2.0 against 1.0 ms of moonpost's CPU per message). Kept files go with the bench's
 * temp folder at the end.
 */
const KEEP_BYTES = 4 * 1024 ** 3;
let keptBytes = 0;
let keptFolders = 0;

/**
 * Empties the folder but keeps it (servers may cache that it exists): its files are moved to a
 * new sibling folder while KEEP_BYTES allows (rename frees no inode), deleted beyond that.
 */
export async function emptyDir(dir: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!names.length) return;
  const aside = join(dir, '..', `bench-kept-${++keptFolders}`);
  await mkdir(aside);
  const batch = 256;
  for (let i = 0; i < names.length; i += batch) {
    await Promise.all(
      names.slice(i, i + batch).map(async (n) => {
        const from = join(dir, n);
        const size = await stat(from).then((st) => st.size, () => 0);
        if (keptBytes + size <= KEEP_BYTES) {
          keptBytes += size;
          await rename(from, join(aside, n)).catch(() => unlink(from).catch(() => undefined));
        } else await unlink(from).catch(() => undefined);
      }),
    );
  }
}
