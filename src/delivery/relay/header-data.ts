import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';

const MAX_HEADER = 256 * 1024;
/** First read: the header of most mail, and the whole of small messages (then no stat is needed). */
const FIRST_READ = 16 * 1024;

export interface HeaderInfo {
  /** The raw header lines (continuations as their own lines), without line endings (R5). */
  lines: string[];
  /** Field name → unfolded value of its first occurrence (R5). */
  data: Record<string, string>;
  /** Bytes of the whole file (R5 Size). */
  size: number;
}

/** The reads of one header: from the offset until its blank line, the file's end or the cap. */
class HeaderReads {
  buf = Buffer.allocUnsafe(FIRST_READ);
  have = 0;
  /** The file's size, once a short read reached its end (-1 before). */
  size = -1;
  private text = '';

  constructor(readonly offset: number) {}

  get want(): number {
    return this.buf.length - this.have;
  }

  /** Records a read that asked for `want` bytes and got `n`; true when another read is needed. */
  took(want: number, n: number): boolean {
    this.have += n;
    // A short read of a regular file is its end: the size without a stat.
    if (n < want) this.size = this.offset + this.have;
    this.text = this.buf.toString('latin1', 0, this.have);
    if (this.size >= 0 || this.have >= MAX_HEADER || /\r?\n\r?\n/.test(this.text)) return false;
    const bigger = Buffer.allocUnsafe(Math.min(MAX_HEADER, this.buf.length * 4));
    this.buf.copy(bigger, 0, 0, this.have);
    this.buf = bigger;
    return true;
  }

  result(size: number): HeaderInfo {
    return parseHeader(this.text, size);
  }
}

/**
 * Reads the header of a queued message (from `offset`, skipping our Return-Path line): only
 * up to the blank line that ends it (at most 256 KB), in one read for most messages.
 */
export async function readHeader(path: string, offset: number): Promise<HeaderInfo> {
  const fh = await open(path, 'r');
  try {
    const r = new HeaderReads(offset);
    for (let more = true; more; ) {
      const want = r.want;
      more = r.took(want, (await fh.read(r.buf, r.have, want, offset + r.have)).bytesRead);
    }
    return r.result(r.size >= 0 ? r.size : (await fh.stat()).size);
  } finally {
    await fh.close();
  }
}

/**
 * The same, synchronously: for a send run going through many queued messages, where a read of
 * a small file (in the page cache, queued moments ago) costs microseconds and an asynchronous
 * one several thread-pool round trips. The caller bounds how long it reads before yielding.
 */
export function readHeaderSync(path: string, offset: number): HeaderInfo {
  const fd = openSync(path, 'r');
  try {
    const r = new HeaderReads(offset);
    for (let more = true; more; ) {
      const want = r.want;
      more = r.took(want, readSync(fd, r.buf, r.have, want, offset + r.have));
    }
    return r.result(r.size >= 0 ? r.size : fstatSync(fd).size);
  } finally {
    closeSync(fd);
  }
}

/** R5: the header lines and the first occurrence of each field, unfolded. */
function parseHeader(text: string, size: number): HeaderInfo {
  const end = text.search(/\r?\n\r?\n/);
  const lines = (end < 0 ? text : text.slice(0, end)).split(/\r?\n/).filter((l, i, a) => l !== '' || i < a.length - 1);
  const data: Record<string, string> = {};
  const seen = new Set<string>();
  // Only the first occurrence of a field is kept, with its continuation lines unfolded.
  let current: string | null = null;
  for (const line of lines) {
    if (/^[ \t]/.test(line)) {
      if (current) data[current] += ` ${line.trim()}`;
      continue;
    }
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon).trim() : '';
    current = name && !seen.has(name.toLowerCase()) ? name : null;
    if (current) {
      seen.add(current.toLowerCase());
      data[current] = line.slice(colon + 1).trim();
    }
  }
  return { lines, data, size };
}
