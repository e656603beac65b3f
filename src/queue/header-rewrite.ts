import { closeSync, fstatSync, openSync } from 'node:fs';
import { fileIo, fsyncFd, WRITE_ON_LOOP_MAX, type FileIo } from '../util/file-ops.js';

const MAX_HEADER = 1024 * 1024;
/** The first read: the kept prefix and a header of usual size, with the start of the body. */
const FIRST_READ = 64 * 1024;
/**
 * Copy buffers, pooled: room for the first read, then the body moved in pieces. A header that
 * does not end within the first read is read on into a buffer of its own, up to MAX_HEADER.
 */
const BUFFER_SIZE = 256 * 1024;
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

/**
 * Reads into buf[at, to) from file offset `position` (by default `at`) until `to` or the end of
 * the file; returns where the read part ends in buf.
 */
async function readUpTo(src: FileIo, buf: Buffer, at: number, to: number, position = at): Promise<number> {
  for (let pos = position; at < to; ) {
    const bytesRead = await src.read(buf, at, to - at, pos);
    if (!bytesRead) break;
    at += bytesRead;
    pos += bytesRead;
  }
  return at;
}

/**
 * Applies ProcessMessage's HeaderModifiers (S19) to a stored message: each `Name: value`
 * line replaces the fields of that name (at the first one's place) or is added at the end
 * of the header; `Name:` with nothing after it removes them. `keep` leading octets (our
 * Return-Path line) are left as they are. The header ends at its first blank line (CRLF
 * CRLF); without one within MAX_HEADER octets, those octets are taken as the header.
 *
 * The file is changed in place: the body moves by the header's change in length, then the new
 * header is written. Pages already in the page cache are overwritten, where a new file costs
 * fresh pages and freeing the old file's blocks: 1.0 against 2.4 ms of CPU for a 1 MB
 * message. In place is safe because the caller (the session, before its reply) holds the
 * only reference to the spool file: a crash midway leaves an unacknowledged orphan, which
 * recovery removes (spool.ts).
 */
export async function rewriteHeader(path: string, modifiers: string[], keep: number, fsync: boolean): Promise<void> {
  const fd = openSync(path, 'r+');
  const buf = keep + FIRST_READ > BUFFER_SIZE ? Buffer.allocUnsafe(keep + FIRST_READ) : takeBuffer();
  try {
    const size = fstatSync(fd).size;
    // A small file is rewritten on the event loop (util/file-ops.ts).
    const fh = fileIo(fd, size <= WRITE_ON_LOOP_MAX);
    // The prefix and the header, read in one piece when the header is of usual size.
    const limit = keep + MAX_HEADER;
    let head = buf;
    let got = await readUpTo(fh, head, 0, keep + FIRST_READ);
    let end = head.subarray(0, got).indexOf(BLANK_LINE, keep);
    if (end < 0 && got === keep + FIRST_READ) {
      head = Buffer.allocUnsafe(limit);
      buf.copy(head, 0, 0, got);
      const before = got;
      got = await readUpTo(fh, head, got, limit);
      end = head.subarray(0, got).indexOf(BLANK_LINE, Math.max(keep, before - 3));
    }
    const headStart = Math.min(keep, got);
    // No blank line within reach: the whole read part is header (a header-only message).
    const bodyStart = end < 0 ? got : end + 2;
    const header = head.subarray(headStart, bodyStart);
    // The header is worked on as bytes (one character each), so the modifiers, which are text,
    // go in as their UTF-8 bytes: both come out as they were.
    const asBytes = modifiers.map((m) => Buffer.from(m, 'utf8').toString('latin1'));
    const edited = Buffer.from(applyModifiers(header.toString('latin1'), asBytes), 'latin1');
    const delta = edited.length - header.length;
    if (delta !== 0) await moveTail(fh, buf, bodyStart, size, delta);
    await writeFully(fh, edited, edited.length, headStart);
    if (fsync) await fsyncFd(fd);
  } finally {
    if (buf.length === BUFFER_SIZE) giveBack(buf);
    closeSync(fd);
  }
}

/** Moves the file's bytes from `from` to its end (`size`) by `delta`, growing or shrinking the file. */
async function moveTail(fh: FileIo, buf: Buffer, from: number, size: number, delta: number): Promise<void> {
  if (delta > 0) {
    // Growing: from the end back, so nothing is overwritten before it is read.
    for (let end = size; end > from; ) {
      const start = Math.max(from, end - buf.length);
      await readFully(fh, buf, end - start, start);
      await writeFully(fh, buf, end - start, start + delta);
      end = start;
    }
    return;
  }
  for (let at = from; at < size; ) {
    const n = Math.min(buf.length, size - at);
    await readFully(fh, buf, n, at);
    await writeFully(fh, buf, n, at + delta);
    at += n;
  }
  await fh.truncate(size + delta);
}

async function readFully(fh: FileIo, buf: Buffer, n: number, position: number): Promise<void> {
  if ((await readUpTo(fh, buf, 0, n, position)) < n) throw new Error(`header rewrite: the file ended before offset ${position + n}`);
}

async function writeFully(fh: FileIo, buf: Buffer, n: number, position: number): Promise<void> {
  for (let done = 0; done < n; ) {
    const bytesWritten = await fh.write(buf, done, n - done, position + done);
    done += bytesWritten;
  }
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
