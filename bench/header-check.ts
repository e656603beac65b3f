/** Counts delivered messages whose header holds a given line (proof that a script's DoDATAStart ran). */
import { open, readdir } from 'node:fs/promises';
import { join } from 'node:path';

const HEAD_BYTES = 8192;
const PARALLEL = 64;

/** Does the header (the text before the first empty line, CRLF or LF) have exactly this line? */
async function headHas(path: string, line: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(HEAD_BYTES);
    const { bytesRead } = await fh.read(buf, 0, HEAD_BYTES, 0);
    const head = buf.toString('latin1', 0, bytesRead).split(/\r?\n\r?\n/, 1)[0];
    return head.split(/\r?\n/).includes(line);
  } finally {
    await fh.close();
  }
}

/** How many files in `dir` (all of them, read PARALLEL at a time) carry `line` in their header. */
export async function countWithHeader(dir: string, line: string): Promise<{ files: number; withLine: number }> {
  const names = await readdir(dir).catch(() => [] as string[]);
  let withLine = 0;
  for (let i = 0; i < names.length; i += PARALLEL) {
    const hits = await Promise.all(names.slice(i, i + PARALLEL).map((n) => headHas(join(dir, n), line).catch(() => false)));
    withLine += hits.filter(Boolean).length;
  }
  return { files: names.length, withLine };
}
