import { closeSync, openSync, read, readSync } from 'node:fs';
import { promisify } from 'node:util';

const readAsync = promisify(read);

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;

/**
 * Prepares message bytes for DATA (RFC 5321 §4.5.2, §2.3.8), one chunk at a time: every line
 * ends in CRLF (a bare LF or bare CR becomes CRLF), a line starting with "." gets another ".",
 * and `end()` closes the last line and adds the terminating ".". A chunk boundary anywhere
 * (even between CR and LF) gives the same bytes as one whole chunk.
 */
export class DotStuffer {
  private lineStart = true;
  private pendingCr = false;

  push(chunk: Uint8Array): Buffer {
    const out = Buffer.allocUnsafe(chunk.length * 2 + 2);
    let o = 0;
    let i = 0;
    if (this.pendingCr && chunk.length) {
      this.pendingCr = false;
      out[o++] = CR;
      out[o++] = LF;
      this.lineStart = true;
      if (chunk[0] === LF) i = 1;
    }
    for (; i < chunk.length; i++) {
      const b = chunk[i];
      if (b === CR) {
        if (i + 1 === chunk.length) {
          this.pendingCr = true;
          break;
        }
        if (chunk[i + 1] === LF) i++;
        out[o++] = CR;
        out[o++] = LF;
        this.lineStart = true;
      } else if (b === LF) {
        out[o++] = CR;
        out[o++] = LF;
        this.lineStart = true;
      } else {
        if (this.lineStart && b === DOT) out[o++] = DOT;
        this.lineStart = false;
        // Copy the rest of the line in one go.
        let j = i + 1;
        while (j < chunk.length && chunk[j] !== CR && chunk[j] !== LF) j++;
        out[o++] = b;
        if (j > i + 1) {
          out.set(chunk.subarray(i + 1, j), o);
          o += j - i - 1;
        }
        i = j - 1;
      }
    }
    return out.subarray(0, o);
  }

  /** The bytes that end the data: CRLF if the last line is open, then ".\r\n". */
  end(): Buffer {
    const open = this.pendingCr || !this.lineStart;
    this.pendingCr = false;
    this.lineStart = true;
    return Buffer.from(open ? '\r\n.\r\n' : '.\r\n', 'latin1');
  }
}

/**
 * Where the message comes from: a stored file read from `offset` (queue files start with our
 * `Return-Path:` line, which the relay skips), or a function giving a fresh stream or iterable
 * each time (strings are sent as UTF-8).
 */
export type BodySource = { path: string; offset?: number } | (() => AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string>);

/** The first read covers most messages whole; bigger ones go on in larger reads. */
const FIRST_CHUNK = 16 * 1024;
const READ_CHUNK = 64 * 1024;

/** Opens the body as an async iterable of byte chunks; nothing is read until iterated. */
export async function* readBody(source: BodySource): AsyncGenerator<Uint8Array> {
  if (typeof source !== 'function') {
    yield* readFileFrom(source.path, source.offset ?? 0);
    return;
  }
  for await (const chunk of source() as AsyncIterable<Uint8Array | string>) {
    yield typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
  }
}

/**
 * A file from `start` to its end. The first chunk is read synchronously: a queued message is in
 * the page cache, the read costs microseconds, and thread-pool round trips (open, read, close)
 * would wait behind the queue updates of the transactions before. Larger files go on with
 * asynchronous reads. The file is closed however the reading ends.
 */
async function* readFileFrom(path: string, start: number): AsyncGenerator<Uint8Array> {
  const fd = openSync(path, 'r');
  try {
    const first = Buffer.allocUnsafe(FIRST_CHUNK);
    const n = readSync(fd, first, 0, FIRST_CHUNK, start);
    if (n > 0) yield first.subarray(0, n);
    // A short read of a regular file is its end.
    if (n < FIRST_CHUNK) return;
    for (let pos = start + n; ; ) {
      const buf = Buffer.allocUnsafe(READ_CHUNK);
      const { bytesRead } = await readAsync(fd, buf, 0, READ_CHUNK, pos);
      if (bytesRead > 0) yield buf.subarray(0, bytesRead);
      if (bytesRead < READ_CHUNK) return;
      pos += bytesRead;
    }
  } finally {
    closeSync(fd);
  }
}
