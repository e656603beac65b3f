import { createReadStream } from 'node:fs';

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

const READ_CHUNK = 64 * 1024;

/** Opens the body as an async iterable of byte chunks; nothing is read until iterated. */
export async function* readBody(source: BodySource): AsyncGenerator<Uint8Array> {
  const it = typeof source === 'function' ? source() : createReadStream(source.path, { start: source.offset ?? 0, highWaterMark: READ_CHUNK });
  for await (const chunk of it as AsyncIterable<Uint8Array | string>) {
    yield typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
  }
}
