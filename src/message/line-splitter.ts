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
 */
export type LineHandler = (data: Buffer, offset: number, eol: number, cont: boolean, partial: boolean) => void;

export class LineSplitter {
  private readonly buf: Buffer;
  private len = 0;
  /** Offset of buf[0] in the stream. */
  private bufOffset = 0;
  /** Bytes written before the current chunk. */
  private total = 0;
  /** A piece of the current line was already handed on. */
  private inLine = false;

  constructor(private readonly maxLine: number, private readonly onLine: LineHandler) {
    // One byte more than a line may hold: room for the CR of a line of maxLine bytes.
    this.buf = Buffer.allocUnsafe(Math.max(1, maxLine) + 1);
  }

  get bytes(): number {
    return this.total;
  }

  write(chunk: Uint8Array): void {
    const c = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const n = c.length;
    const cap = this.buf.length;
    let pos = 0;
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
          this.emit(c.subarray(pos, end), this.total + pos, eol, false);
          pos = lf + 1;
          continue;
        }
      }
      let p = pos;
      while (p < stop) {
        if (this.len === cap) this.flushPiece();
        if (this.len === 0) this.bufOffset = this.total + p;
        const take = Math.min(cap - this.len, stop - p);
        c.copy(this.buf, this.len, p, p + take);
        this.len += take;
        p += take;
      }
      if (lf < 0) break;
      if (this.len === 0) this.bufOffset = this.total + stop;
      let end = this.len;
      let eol = 1;
      if (end > 0 && this.buf[end - 1] === 13) {
        end--;
        eol = 2;
      }
      this.len = 0;
      this.emitBuffered(end, eol);
      pos = lf + 1;
    }
    this.total += n;
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
  private emitBuffered(end: number, eol: number): void {
    const maxLine = this.buf.length - 1;
    if (end > maxLine) {
      this.emit(this.buf.subarray(0, maxLine), this.bufOffset, 0, true);
      this.emit(this.buf.subarray(maxLine, end), this.bufOffset + maxLine, eol, false);
    } else {
      this.emit(this.buf.subarray(0, end), this.bufOffset, eol, false);
    }
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

  private emit(data: Buffer, offset: number, eol: number, partial: boolean): void {
    const cont = this.inLine;
    this.inLine = partial;
    this.onLine(data, offset, eol, cont, partial);
  }
}
