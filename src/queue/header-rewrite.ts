import { open, rename, unlink, type FileHandle } from 'node:fs/promises';

const MAX_HEADER = 1024 * 1024;
/** The first read: the kept prefix and a header of usual size, with the start of the body. */
const FIRST_READ = 64 * 1024;
/** Copy buffers: room for the kept prefix and the largest header, then the body in pieces. */
const BUFFER_SIZE = MAX_HEADER + 64 * 1024;
const POOL_MAX = 32;
const pool: Buffer[] = [];
const BLANK_LINE = Buffer.from('\r\n\r\n');

/** A copy buffer from the pool (not zeroed: only what was read into it is used). */
function takeBuffer(): Buffer {
  return pool.pop() ?? Buffer.allocUnsafe(BUFFER_SIZE);
}

function giveBack(b: Buffer): void {
  if (pool.length < POOL_MAX) pool.push(b);
}

/** Reads into buf[at, to) from file offset `at` until `to` or the end of the file; returns the end. */
async function readUpTo(src: FileHandle, buf: Buffer, at: number, to: number): Promise<number> {
  while (at < to) {
    const { bytesRead } = await src.read(buf, at, to - at, at);
    if (!bytesRead) break;
    at += bytesRead;
  }
  return at;
}

/**
 * Applies ProcessMessage's HeaderModifiers (S19) to a stored message: each `Name: value`
 * line replaces the fields of that name (at the first one's place) or is added at the end
 * of the header; `Name:` with nothing after it removes them. `keep` leading octets (our
 * Return-Path line) are left as they are. The header ends at its first blank line (CRLF
 * CRLF); without one within MAX_HEADER octets, those octets are taken as the header. The new
 * file replaces the old one atomically.
 */
export async function rewriteHeader(path: string, modifiers: string[], keep: number, fsync: boolean): Promise<void> {
  const src = await open(path, 'r');
  const buf = keep + MAX_HEADER > BUFFER_SIZE ? Buffer.allocUnsafe(keep + MAX_HEADER) : takeBuffer();
  const tmp = `${path}.rewrite`;
  let dst: FileHandle | null = null;
  try {
    // The prefix and the header, read in one piece when the header is of usual size.
    const limit = keep + MAX_HEADER;
    let got = await readUpTo(src, buf, 0, Math.min(limit, keep + FIRST_READ));
    let end = buf.subarray(0, got).indexOf(BLANK_LINE, keep);
    if (end < 0 && got === keep + FIRST_READ) {
      const before = got;
      got = await readUpTo(src, buf, got, limit);
      end = buf.subarray(0, got).indexOf(BLANK_LINE, Math.max(keep, before - 3));
    }
    const headStart = Math.min(keep, got);
    // No blank line within reach: the whole read part is header (a header-only message).
    const bodyStart = end < 0 ? got : end + 2;
    const header = buf.subarray(headStart, bodyStart);
    // The header is worked on as bytes (one character each), so the modifiers, which are text,
    // go in as their UTF-8 bytes: both come out as they were.
    const asBytes = modifiers.map((m) => Buffer.from(m, 'utf8').toString('latin1'));
    const edited = Buffer.from(applyModifiers(header.toString('latin1'), asBytes), 'latin1');
    dst = await open(tmp, 'w', 0o600);
    // The prefix, the new header and the part of the body already read, then the rest.
    await dst.writev([buf.subarray(0, headStart), edited, buf.subarray(bodyStart, got)]);
    for (let pos = got; ; ) {
      const { bytesRead } = await src.read(buf, 0, buf.length, pos);
      if (!bytesRead) break;
      await dst.write(buf, 0, bytesRead);
      pos += bytesRead;
    }
    if (fsync) await dst.sync();
  } catch (err) {
    await dst?.close();
    await src.close();
    await unlink(tmp).catch(() => undefined);
    throw err;
  } finally {
    if (buf.length === BUFFER_SIZE) giveBack(buf);
  }
  await dst.close();
  await src.close();
  await rename(tmp, path);
}

/** The header text (fields with CRLFs, no blank line) after the modifiers. */
export function applyModifiers(header: string, modifiers: string[]): string {
  // Fields with their continuation lines.
  const fields: string[] = [];
  for (const line of header.split('\r\n')) {
    if (line === '') continue;
    if (/^[ \t]/.test(line) && fields.length) fields[fields.length - 1] += `\r\n${line}`;
    else fields.push(line);
  }
  const nameOf = (f: string): string => f.slice(0, Math.max(0, f.indexOf(':'))).trim().toLowerCase();
  let out = fields;
  for (const m of modifiers) {
    const colon = m.indexOf(':');
    if (colon <= 0) continue;
    const name = m.slice(0, colon).trim().toLowerCase();
    if (!/^[\x21-\x39\x3b-\x7e]+$/.test(name)) continue;
    const value = m.slice(colon + 1).replace(/[\r\n]+/g, ' ').trim();
    const first = out.findIndex((f) => nameOf(f) === name);
    out = out.filter((f) => nameOf(f) !== name);
    if (!value) continue;
    const line = `${m.slice(0, colon).trim()}: ${value}`;
    if (first < 0) out.push(line);
    else out.splice(Math.min(first, out.length), 0, line);
  }
  return out.map((f) => `${f}\r\n`).join('');
}
