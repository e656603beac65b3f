/**
 * Splits a byte stream into lines, with bounded memory: a line longer than `maxLine` bytes is
 * handed on in pieces of at most `maxLine` bytes.
 *
 * The callback gets:
 * - `data`: the line's bytes without its terminator (valid only during the call: copy to keep);
 * - `offset`: the absolute offset of data[0] in the stream;
 * - `eol`: length of the terminator that follows (2 for CRLF, 1 for a bare LF, 0 for none);
 * - `cont`: true when this piece continues a line whose earlier piece was already handed on;
 * - `partial`: true when more of the same line follows (the piece was cut at `maxLine`).
 * The last line of the stream, when it has no terminator, comes with eol 0 and partial false.
 * A CR is never split from the LF that follows it.
 * The handler may return true after a whole line (eol > 0): write() then stops after that
 * line and returns where, so that its caller can take the bytes that follow another way.
 */
export type LineHandler = (data: Buffer, offset: number, eol: number, cont: boolean, partial: boolean) => boolean | void;

const EMPTY = Buffer.alloc(0);

export class LineSplitter {
  /** Holds a line that spans chunks; grown as needed up to `cap`. */
  private buf: Buffer = EMPTY;
  /** One byte more than a line may hold: room for the CR of a line of maxLine bytes. */
  private readonly cap: number;
  private len = 0;
  /** Offset of buf[0] in the stream. */
  private bufOffset = 0;
  /** Bytes written before the current chunk. */
  private total = 0;
  /** A piece of the current line was already handed on. */
  private inLine = false;

  constructor(private readonly maxLine: number, private readonly onLine: LineHandler) {
    this.cap = Math.max(1, maxLine) + 1;
  }

  get bytes(): number {
    return this.total;
  }

  /** No part of a line is held or was handed on: the next byte starts a line. */
  get atLineStart(): boolean {
    return this.len === 0 && !this.inLine;
  }

  /**
   * Bytes that start at a line start and end with a line's LF were taken care of by the
   * caller: they only count for the offsets.
   */
  advance(n: number): void {
    if (!this.atLineStart) throw new Error('LineSplitter.advance inside a line');
    this.total += n;
  }

  /**
   * Splits chunk[start..]; returns the offset in the chunk where it stopped: the chunk's
   * length, or the end of a line after which the handler asked to stop.
   */
  write(chunk: Uint8Array, start = 0): number {
    const c = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const n = c.length;
    const cap = this.cap;
    // Stream offset of c[0].
    const base = this.total - start;
    let pos = start;
    while (pos < n) {
      const lf = c.indexOf(10, pos);
      const stop = lf < 0 ? n : lf;
      if (this.len === 0 && lf >= 0 && stop - pos <= cap) {
        // The whole line (with its CR, if any) is in this chunk: hand it on without copying.
        let end = stop;
        let eol = 1;
        if (end > pos && c[end - 1] === 13) {
          end--;
          eol = 2;
        }
        if (eol === 2 || end - pos < cap) {
          const stop = this.emit(c.subarray(pos, end), base + pos, eol, false);
          pos = lf + 1;
          if (stop) {
            this.total = base + pos;
            return pos;
          }
          continue;
        }
      }
      let p = pos;
      while (p < stop) {
        if (this.len === cap) this.flushPiece();
        if (this.len === 0) this.bufOffset = base + p;
        const take = Math.min(cap - this.len, stop - p);
        if (this.len + take > this.buf.length) this.grow(this.len + take);
        c.copy(this.buf, this.len, p, p + take);
        this.len += take;
        p += take;
      }
      if (lf < 0) break;
      if (this.len === 0) this.bufOffset = base + stop;
      let end = this.len;
      let eol = 1;
      if (end > 0 && this.buf[end - 1] === 13) {
        end--;
        eol = 2;
      }
      this.len = 0;
      const stopHere = this.emitBuffered(end, eol);
      pos = lf + 1;
      if (stopHere) {
        this.total = base + pos;
        return pos;
      }
    }
    this.total = base + n;
    return n;
  }

  /** Hands on what is left (a last line without terminator). */
  end(): void {
    if (this.len > 0) {
      const len = this.len;
      this.len = 0;
      this.emitBuffered(len, 0);
    }
    this.inLine = false;
  }

  /** Hands on the buffered line of `end` bytes: in two pieces when it is one byte over maxLine. */
  private emitBuffered(end: number, eol: number): boolean {
    const maxLine = this.cap - 1;
    if (end > maxLine) {
      this.emit(this.buf.subarray(0, maxLine), this.bufOffset, 0, true);
      return this.emit(this.buf.subarray(maxLine, end), this.bufOffset + maxLine, eol, false);
    }
    return this.emit(this.buf.subarray(0, end), this.bufOffset, eol, false);
  }

  /** Most lines are handed on from the chunk itself: the buffer starts small. */
  private grow(need: number): void {
    const next = Buffer.allocUnsafe(Math.min(this.cap, Math.max(need, 2 * this.buf.length, 256)));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  /**
   * The buffer is full (maxLine + 1 bytes) and the line goes on: hand on its first maxLine
   * bytes as a piece and keep the last one (which may be a CR whose LF is still to come).
   */
  private flushPiece(): void {
    const take = this.len - 1;
    const offset = this.bufOffset;
    // Hand on a copy: the buffer is reused below.
    const piece = Buffer.from(this.buf.subarray(0, take));
    this.buf[0] = this.buf[take];
    this.len = 1;
    this.bufOffset = offset + take;
    this.emit(piece, offset, 0, true);
  }

  /** Whether the handler asked to stop (honoured after a whole line only). */
  private emit(data: Buffer, offset: number, eol: number, partial: boolean): boolean {
    const cont = this.inLine;
    this.inLine = partial;
    return this.onLine(data, offset, eol, cont, partial) === true && eol > 0 && !partial;
  }
}
