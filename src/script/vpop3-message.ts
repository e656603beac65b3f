import { closeSync, openSync, readSync } from 'node:fs';
import { parseTransferEncoding } from '../message/header-values.js';
import { createTransferDecoder } from '../message/transfer-decoding.js';
import type { MimePart } from '../message/types.js';

/**
 * The message ProcessMessage is about, as the VPOP3.GetMessage* helpers read it: the stored
 * message file (bytes [0, size) are the message), and the analyser's structure table over
 * that same file (its Start/End offsets).
 */
export interface MessageContext {
  path: string;
  size: number;
  structure: MimePart[];
}

const CHUNK = 64 * 1024;
const LF = 10;
const CR = 13;

/** Where a part's header ends and its body starts (offsets into the message). */
export interface PartSplit {
  /** End of the header: just after the line break of its last line (the start of the empty line). */
  headerEnd: number;
  /** First byte of the body: just after the empty line; the part's End when there is none. */
  bodyStart: number;
  /** The part's End, clipped to the message size. */
  end: number;
}

/**
 * Synchronous, bounded reads of the message being processed: a line cursor and the parts of
 * the structure table. Every call opens the file, reads only what it needs and closes it again;
 * nothing larger than `maxBytes` (plus one 64 KiB read buffer) is ever held. Errors are thrown
 * as Errors whose message is meant for the script (they become Lua errors).
 */
export class MessageFile {
  /** Offset of the next line GetMessageLines returns. */
  cursor = 0;
  private readonly byPath = new Map<string, MimePart>();

  constructor(
    readonly ctx: MessageContext,
    readonly maxBytes: number,
  ) {
    for (const p of ctx.structure) {
      const key = p.Path.toUpperCase();
      if (!this.byPath.has(key)) this.byPath.set(key, p);
    }
  }

  /** The structure row with this IMAP path (case-insensitive: "text" finds "TEXT"). */
  part(path: string): MimePart | undefined {
    return this.byPath.get(path.toUpperCase());
  }

  private withFd<T>(name: string, fn: (fd: number) => T): T {
    let fd: number;
    try {
      fd = openSync(this.ctx.path, 'r');
    } catch (err) {
      throw new Error(`${name}: cannot read the message (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
    try {
      return fn(fd);
    } finally {
      closeSync(fd);
    }
  }

  /** Bytes [start, end) of the message (already checked against the cap). */
  private readRange(fd: number, start: number, end: number): Buffer {
    const out = Buffer.allocUnsafe(end - start);
    let got = 0;
    while (got < out.length) {
      const n = readSync(fd, out, got, out.length - got, start + got);
      if (n <= 0) break;
      got += n;
    }
    return got === out.length ? out : out.subarray(0, got);
  }

  /**
   * Up to `n` lines from the cursor, without their line ends (LF, or CRLF); a last line with no
   * line end counts as a line. Stops early before a line that would bring the total past
   * maxBytes. A single line longer than maxBytes raises an error, and the cursor moves past it.
   */
  lines(n: number, name: string): Buffer[] {
    const end = this.ctx.size;
    if (this.cursor >= end || n <= 0) return [];
    return this.withFd(name, (fd) => {
      const out: Buffer[] = [];
      let total = 0;
      const buf = Buffer.allocUnsafe(Math.min(CHUNK, end - this.cursor));
      /** Offset of the next byte to read. */
      let pos = this.cursor;
      /** The line being gathered: where it starts, its pieces, its length so far. */
      let lineStart = pos;
      let pieces: Buffer[] = [];
      let lineLen = 0;
      /** The line is over the cap: it is skipped, not kept, up to its end. */
      let tooLong = false;
      const room = (): number => (out.length ? this.maxBytes - total : this.maxBytes);
      /** Takes the line ending just before `next`; false when it does not fit after the others. */
      const complete = (next: number, hadLf: boolean): boolean => {
        let line = tooLong ? null : pieces.length === 1 ? pieces[0] : Buffer.concat(pieces, lineLen);
        if (line && hadLf && line.length > 0 && line[line.length - 1] === CR) line = line.subarray(0, line.length - 1);
        if (line === null || line.length > room()) {
          if (out.length) return false;
          this.cursor = next;
          throw new Error(`${name}: the line at offset ${lineStart} is over the limit of ${this.maxBytes} bytes`);
        }
        out.push(line);
        total += line.length;
        lineStart = next;
        pieces = [];
        lineLen = 0;
        return true;
      };
      let eof = false;
      reading: while (out.length < n && pos < end) {
        const got = readSync(fd, buf, 0, Math.min(buf.length, end - pos), pos);
        if (got <= 0) {
          eof = true;
          break;
        }
        const chunk = buf.subarray(0, got);
        let i = 0;
        while (i < got) {
          const lf = chunk.indexOf(LF, i);
          const stop = lf < 0 ? got : lf;
          lineLen += stop - i;
          // A trailing CR may still go, hence the + 1.
          if (!tooLong && lineLen > room() + 1) {
            if (out.length) {
              this.cursor = lineStart;
              return out;
            }
            tooLong = true;
            pieces = [];
          }
          if (!tooLong && stop > i) pieces.push(Buffer.from(chunk.subarray(i, stop)));
          if (lf < 0) {
            i = got;
            break;
          }
          i = lf + 1;
          if (!complete(pos + i, true)) {
            this.cursor = lineStart;
            return out;
          }
          if (out.length >= n) {
            pos += i;
            break reading;
          }
        }
        pos += i;
      }
      // The last line of the message, without a line end (unless it does not fit after the others).
      if (out.length < n && (pos >= end || eof) && (lineLen > 0 || tooLong)) complete(pos, false);
      this.cursor = lineStart;
      return out;
    });
  }

  /** The range of a part, its End clipped to the message. */
  private bounds(p: MimePart): { start: number; end: number } {
    const end = Math.max(0, Math.min(p.End, this.ctx.size));
    return { start: Math.min(Math.max(0, p.Start), end), end };
  }

  /** The stored bytes of a part, header and body. */
  raw(p: MimePart, name: string): Buffer {
    const { start, end } = this.bounds(p);
    if (end - start > this.maxBytes) throw new Error(`${name}: part ${p.Path} is ${end - start} bytes, over the limit of ${this.maxBytes} bytes`);
    if (end === start) return Buffer.alloc(0);
    return this.withFd(name, (fd) => this.readRange(fd, start, end));
  }

  /** Finds the empty line that ends a part's header; a header over maxBytes is an error. */
  split(p: MimePart, name: string): PartSplit {
    const { start, end } = this.bounds(p);
    const found = (headerEnd: number, bodyStart: number): PartSplit => {
      if (headerEnd - start > this.maxBytes) throw new Error(`${name}: the header of part ${p.Path} is over the limit of ${this.maxBytes} bytes`);
      return { headerEnd, bodyStart, end };
    };
    if (end === start) return found(start, start);
    return this.withFd(name, (fd) => {
      const buf = Buffer.allocUnsafe(Math.min(CHUNK, end - start));
      // 0: at the start of a line, 1: after a CR at the start of a line, 2: inside a line.
      let state = 0;
      let pos = start;
      while (pos < end) {
        // Past the cap with no empty line yet: no need to read further.
        if (pos - start > this.maxBytes) return found(pos, pos);
        const got = readSync(fd, buf, 0, Math.min(buf.length, end - pos), pos);
        if (got <= 0) break;
        let i = 0;
        while (i < got) {
          if (state === 2) {
            const lf = buf.indexOf(LF, i);
            if (lf < 0 || lf >= got) {
              i = got;
              break;
            }
            i = lf + 1;
            state = 0;
          } else if (buf[i] === LF) {
            const at = pos + i;
            return found(state === 1 ? at - 1 : at, at + 1);
          } else if (buf[i] === CR && state === 0) {
            state = 1;
            i++;
          } else {
            state = 2;
          }
        }
        pos += got;
      }
      // No empty line: the whole part is header.
      return found(end, end);
    });
  }

  /** A part's header lines with their line ends, without the empty line after them. */
  header(p: MimePart, name: string): Buffer {
    return this.headerOf(p, this.split(p, name), name);
  }

  private headerOf(p: MimePart, s: PartSplit, name: string): Buffer {
    const start = this.bounds(p).start;
    if (s.headerEnd <= start) return Buffer.alloc(0);
    return this.withFd(name, (fd) => this.readRange(fd, start, s.headerEnd));
  }

  /**
   * A part's body, decoded from its Content-Transfer-Encoding when that is base64 or
   * quoted-printable (as stored otherwise); read and decoded in pieces, refused as soon as the
   * decoded bytes pass maxBytes.
   */
  body(p: MimePart, name: string): Buffer {
    const s = this.split(p, name);
    const cte = transferEncoding(this.headerOf(p, s, name));
    const parts: Buffer[] = [];
    const decoder = createTransferDecoder(cte, (d) => parts.push(Buffer.from(d)));
    const over = (): Error => new Error(`${name}: the body of part ${p.Path} is over the limit of ${this.maxBytes} bytes`);
    if (s.end > s.bodyStart) {
      this.withFd(name, (fd) => {
        const buf = Buffer.allocUnsafe(Math.min(CHUNK, s.end - s.bodyStart));
        let pos = s.bodyStart;
        while (pos < s.end) {
          const got = readSync(fd, buf, 0, Math.min(buf.length, s.end - pos), pos);
          if (got <= 0) break;
          decoder.write(buf.subarray(0, got));
          if (decoder.size > this.maxBytes) throw over();
          pos += got;
        }
      });
    }
    decoder.end();
    if (decoder.size > this.maxBytes) throw over();
    return Buffer.concat(parts, decoder.size);
  }
}

/** The Content-Transfer-Encoding of a header block, lower-cased ("" when absent). */
export function transferEncoding(header: Buffer): string {
  const text = header.toString('latin1').replace(/\r?\n(?=[ \t])/g, '');
  const m = /^content-transfer-encoding[ \t]*:(.*)$/im.exec(text);
  return m ? parseTransferEncoding(m[1]) : '';
}
