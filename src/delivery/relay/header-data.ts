import { open } from 'node:fs/promises';

const MAX_HEADER = 256 * 1024;

export interface HeaderInfo {
  /** The raw header lines (continuations as their own lines), without line endings (R5). */
  lines: string[];
  /** Field name → unfolded value of its first occurrence (R5). */
  data: Record<string, string>;
}

/** Reads the header of a queued message (from `offset`, skipping our Return-Path line). */
export async function readHeader(path: string, offset: number): Promise<HeaderInfo> {
  const fh = await open(path, 'r');
  let text: string;
  try {
    const buf = Buffer.alloc(MAX_HEADER);
    const { bytesRead } = await fh.read(buf, 0, MAX_HEADER, offset);
    text = buf.toString('latin1', 0, bytesRead);
  } finally {
    await fh.close();
  }
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
  return { lines, data };
}
