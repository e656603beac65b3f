const LF = 10;

/**
 * Cuts the stored form of a message (every line ending CRLF) back into lines for the
 * per-line script hooks. A line longer than `maxLine` is cut short: the data reader has
 * already flagged it and the message will be refused, so its tail is never needed.
 */
export class LineSplitter {
  private parts: Buffer[] = [];
  private partLen = 0;
  private truncated = false;

  constructor(
    private readonly maxLine: number,
    private readonly onLine: (line: Buffer) => void,
  ) {}

  write(bufs: Buffer[]): void {
    for (const b of bufs) this.push(b);
  }

  private push(b: Buffer): void {
    let pos = 0;
    while (pos < b.length) {
      const lf = b.indexOf(LF, pos);
      if (lf < 0) {
        this.keep(b.subarray(pos));
        return;
      }
      if (this.parts.length === 0 && lf - pos <= this.maxLine + 2) {
        // The whole line is in this buffer (the usual case): one view, without its CR.
        this.onLine(b.subarray(pos, lf > pos && b[lf - 1] === 13 ? lf - 1 : lf));
        pos = lf + 1;
        continue;
      }
      this.keep(b.subarray(pos, lf));
      let line = this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts, this.partLen);
      if (line.length && line[line.length - 1] === 13) line = line.subarray(0, line.length - 1);
      this.parts = [];
      this.partLen = 0;
      this.truncated = false;
      this.onLine(line);
      pos = lf + 1;
    }
  }

  private keep(b: Buffer): void {
    if (!b.length || this.truncated) return;
    const room = this.maxLine + 2 - this.partLen;
    if (b.length > room) {
      b = b.subarray(0, Math.max(0, room));
      this.truncated = true;
    }
    this.parts.push(b);
    this.partLen += b.length;
  }
}
