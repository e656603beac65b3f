const CR = 13;
const LF = 10;
const DOT = 46;
const CRLF = Buffer.from('\r\n');

export interface DataSink {
  /** Bytes of the message as stored: unstuffed, every line ending CRLF. */
  write(bufs: Buffer[]): void;
}

/**
 * Streams the body of DATA (dot mode) or BDAT chunks into a sink without holding the message.
 *
 * Only `<CRLF>.<CRLF>` ends DATA. A bare LF ends a line and is stored as CRLF (Postfix's
 * `smtpd_forbid_bare_newline = normalize`), but a "." line next to a bare LF never ends the
 * message, so a second message cannot be smuggled inside the first. A bare CR is plain data.
 * Runs of unchanged bytes pass through as slices of the input; a line is copied only when a
 * stuffed dot is removed or a CR inserted.
 */
export class DataReader {
  size = 0;
  tooBig = false;
  longLine = false;
  /** Longest line seen, in octets without the line ending. */
  maxLineSeen = 0;
  /** Lines completed so far. */
  linesDone = 0;
  /** Indexes of lines whose stuffed leading dot was removed (for MessageLineRaw). */
  readonly dottedLines: number[] = [];

  private atLineStart = true;
  /** The line before the current one ended in CRLF (the start of data counts as such). */
  private prevCRLF = true;
  private lineLen = 0;
  /** The current line so far is a single (removed) dot, maybe followed by a held CR. */
  private dotOnly = false;
  private heldCR = false;
  private lastCR = false;
  private out: Buffer[] = [];
  private outLen = 0;

  constructor(
    private readonly sink: DataSink,
    private readonly dotMode: boolean,
    private readonly maxSize: number,
    private readonly maxLine: number,
  ) {}

  /**
   * Consumes `chunk` from `start`. Returns the offset just past the final `.<CRLF>` when DATA
   * ends inside it, or -1 when the whole chunk was consumed.
   */
  push(chunk: Buffer, start = 0, end = chunk.length): number {
    let pos = start;
    let spanStart = pos;
    while (pos < end) {
      if (this.atLineStart) {
        this.atLineStart = false;
        this.lineLen = 0;
        if (this.dotMode && chunk[pos] === DOT) {
          this.dottedLines.push(this.linesDone);
          this.emit(chunk, spanStart, pos);
          pos++;
          spanStart = pos;
          this.dotOnly = true;
          this.lineLen = 1;
          continue;
        }
      }
      if (this.dotOnly) {
        // Held state: "." then maybe "\r". Decide when more bytes arrive.
        const c = chunk[pos];
        if (!this.heldCR && c === CR) {
          this.heldCR = true;
          pos++;
          spanStart = pos;
          continue;
        }
        if (c === LF) {
          if (this.heldCR && this.prevCRLF) {
            this.dotOnly = false;
            this.heldCR = false;
            this.flush();
            return pos + 1;
          }
          // "." ended by a bare LF, or after a bare-LF line: an empty content line.
          // (A held CR was never counted in lineLen, so there is nothing to take off.)
          this.lineDone(false);
          this.prevCRLF = this.heldCR;
          this.dotOnly = false;
          this.heldCR = false;
          this.emitBuf(CRLF);
          this.atLineStart = true;
          this.lastCR = false;
          pos++;
          spanStart = pos;
          continue;
        }
        // Plain content after a stuffed dot; re-emit a held CR as data.
        this.dotOnly = false;
        if (this.heldCR) {
          this.heldCR = false;
          this.emitBuf(Buffer.from([CR]));
          this.lineLen++;
        }
      }
      const lf = chunk.indexOf(LF, pos);
      if (lf < 0 || lf >= end) {
        this.lineLen += end - pos;
        this.lastCR = chunk[end - 1] === CR;
        pos = end;
        break;
      }
      const hasCR = lf > pos ? chunk[lf - 1] === CR : this.lastCR;
      this.lineLen += lf - pos;
      if (hasCR) {
        this.lineDone(true);
        pos = lf + 1;
      } else {
        // Bare LF: store the line with CRLF.
        this.lineDone(false);
        this.emit(chunk, spanStart, lf);
        this.emitBuf(CRLF);
        pos = lf + 1;
        spanStart = pos;
      }
      this.prevCRLF = hasCR;
      this.atLineStart = true;
      this.lastCR = false;
    }
    this.emit(chunk, spanStart, pos);
    this.flush();
    return -1;
  }

  private lineDone(hasCR: boolean): void {
    this.linesDone++;
    const len = this.lineLen - (hasCR ? 1 : 0);
    if (len > this.maxLineSeen) this.maxLineSeen = len;
    if (len > this.maxLine) this.longLine = true;
  }

  private emit(chunk: Buffer, from: number, to: number): void {
    if (to > from) this.emitBuf(chunk.subarray(from, to));
  }

  private emitBuf(b: Buffer): void {
    this.size += b.length;
    if (this.maxSize > 0 && this.size > this.maxSize) this.tooBig = true;
    if (this.tooBig) return;
    this.out.push(b);
    this.outLen += b.length;
  }

  private flush(): void {
    if (this.out.length) {
      this.sink.write(this.out);
      this.out = [];
      this.outLen = 0;
    }
  }

  /** BDAT LAST or end of input: a final line without CRLF is completed. */
  finish(): void {
    if (this.dotOnly) {
      this.dotOnly = false;
      if (this.heldCR) this.emitBuf(Buffer.from([CR]));
    }
    if (!this.dotMode && !this.atLineStart) {
      // BDAT data that stops mid-line: the line is checked and ended like any other.
      this.lineDone(this.lastCR);
      this.emitBuf(this.lastCR ? Buffer.from([LF]) : CRLF);
      this.atLineStart = true;
      this.lastCR = false;
    }
    this.flush();
  }
}
