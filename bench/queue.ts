/** Files left in a moonpost queue folder after a benchmark (a message never removed is a bug). */
import { readdir } from 'node:fs/promises';
import { sleep } from './proc.js';

async function queueFiles(dir: string): Promise<number> {
  try {
    const entries = await readdir(dir, { recursive: true, withFileTypes: true });
    return entries.filter((e) => e.isFile()).length;
  } catch {
    return 0;
  }
}

/** Files left in moonpost's queue once it has had up to 10 s to finish removing delivered ones. */
export async function queueLeftovers(dir: string): Promise<number> {
  let n = await queueFiles(dir);
  for (let i = 0; i < 50 && n > 0; i++) {
    await sleep(200);
    n = await queueFiles(dir);
  }
  return n;
}
