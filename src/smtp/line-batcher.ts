const LF = 10;
const LF_BUF = Buffer.from([LF]);

/**
 * Gathers the stored form of a message (every line ending CRLF), as the data reader hands it
 * on in pieces, into blocks of whole lines for the per-line script hooks: one block per write,
 * from the start of its first line (carried over from earlier writes) to its last LF. A line
 * longer than `maxLine` + 2 that spans writes is kept as its first `maxLine` + 2 bytes: the
 * data reader has flagged it and the message will be refused, so its tail is never needed,
 * and it must not grow in memory meanwhile.
 */
export class LineBatcher {
  private carry: Buffer[] = [];
  private carryLen = 0;

  constructor(private readonly maxLine: number) {}

  /**
   * The whole lines `bufs` completes, as the pieces of one block ending in LF (views of the
   * pieces given, which must not be reused, and of the carried ones); null when it completes
   * none.
   */
  take(bufs: Buffer[]): Buffer[] | null {
    const [whole, tail] = splitAfterLastLf(bufs);
    if (!whole.length) {
      this.keep(tail);
      return null;
    }
    let parts = whole;
    if (this.carryLen) {
      // The carried line ends at the first LF: its last piece is capped like the others.
      const [end, rest] = splitAtFirstLf(whole);
      this.keep(end);
      parts = [...this.carry, LF_BUF, ...rest];
    }
    this.carry = [];
    this.carryLen = 0;
    this.keep(tail);
    return parts;
  }

  private keep(bufs: Buffer[]): void {
    const room = this.maxLine + 2;
    for (const b of bufs) {
      if (this.carryLen >= room) return;
      const piece = b.length > room - this.carryLen ? b.subarray(0, room - this.carryLen) : b;
      if (!piece.length) continue;
      this.carry.push(piece);
      this.carryLen += piece.length;
    }
  }
}

/** Cuts a run of buffers after its last LF: what ends with it, and what follows. */
function splitAfterLastLf(bufs: Buffer[]): [Buffer[], Buffer[]] {
  for (let i = bufs.length - 1; i >= 0; i--) {
    const lf = bufs[i].lastIndexOf(LF);
    if (lf < 0) continue;
    const head = bufs.slice(0, i);
    const tail = bufs.slice(i + 1);
    head.push(bufs[i].subarray(0, lf + 1));
    if (lf + 1 < bufs[i].length) tail.unshift(bufs[i].subarray(lf + 1));
    return [head, tail];
  }
  return [[], bufs];
}

/** Cuts a run of buffers that holds an LF at its first one: what comes before it, and after it. */
function splitAtFirstLf(bufs: Buffer[]): [Buffer[], Buffer[]] {
  for (let i = 0; i < bufs.length; i++) {
    const lf = bufs[i].indexOf(LF);
    if (lf < 0) continue;
    const before = bufs.slice(0, i);
    if (lf > 0) before.push(bufs[i].subarray(0, lf));
    const after = bufs.slice(i + 1);
    if (lf + 1 < bufs[i].length) after.unshift(bufs[i].subarray(lf + 1));
    return [before, after];
  }
  return [bufs, []];
}

/** The lines of a block (each ending LF, maybe CRLF), without their line ends. */
export function splitLines(pieces: Buffer[]): Buffer[] {
  const block = pieces.length === 1 ? pieces[0] : Buffer.concat(pieces);
  const lines: Buffer[] = [];
  for (let start = 0; start < block.length; ) {
    let lf = block.indexOf(LF, start);
    if (lf < 0) lf = block.length;
    lines.push(block.subarray(start, lf > start && block[lf - 1] === 13 ? lf - 1 : lf));
    start = lf + 1;
  }
  return lines;
}
