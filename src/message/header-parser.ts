/**
 * Collects the fields of one header block (RFC 5322 §2.2) line by line, unfolding continued
 * lines, within a byte budget. It decides only what is a field, a continuation or not a
 * header line at all; the caller decides where the block ends.
 */

export interface RawHeaderField {
  name: string;
  /** Lower-cased name, for lookups. */
  key: string;
  value: string;
  /** The value's bytes were not valid UTF-8 and were read as Latin-1. */
  latin1: boolean;
}

export type HeaderLineResult = 'field' | 'continuation' | 'not-header' | 'ignored';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Bytes as UTF-8 when they are valid UTF-8, else one character per byte. */
export function decodeHeaderBytes(b: Buffer): { text: string; latin1: boolean } {
  let ascii = true;
  for (let i = 0; i < b.length; i++) {
    if (b[i] >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return { text: b.toString('latin1'), latin1: false };
  try {
    return { text: utf8.decode(b), latin1: false };
  } catch {
    return { text: b.toString('latin1'), latin1: true };
  }
}

function isWsp(c: number): boolean {
  return c === 32 || c === 9;
}

/**
 * Offset of the colon when the line starts a field, else -1. RFC 5322 wants a name of
 * printable ASCII; any name without whitespace is accepted here (8-bit and control bytes
 * included), so that junk in one field name does not end the header early and hide the
 * fields after it (mail programs read on to the blank line too).
 */
export function fieldNameEnd(line: Buffer): number {
  const colon = line.indexOf(58);
  if (colon <= 0) return -1;
  let end = colon;
  while (end > 0 && isWsp(line[end - 1])) end--; // obsolete syntax: "Subject  : x"
  if (end === 0) return -1;
  for (let i = 0; i < end; i++) {
    const c = line[i];
    if (c === 32 || c === 9) return -1;
  }
  return colon;
}

export class HeaderCollector {
  readonly fields: RawHeaderField[] = [];
  /** Some bytes were left out because of the budget. */
  overflow = false;
  /** Some field had 8-bit bytes that are not UTF-8. */
  eightBit = false;
  /** Some line could not be read as a field or a continuation. */
  malformed = false;
  private lines = 0;
  private curName: string | null = null;
  private curParts: Buffer[] = [];
  private curKeep = false;
  private used = 0;

  /**
   * @param maxBytes most bytes of names and values kept
   * @param keep which fields to keep, by lower-cased name (all when absent)
   * @param skipMboxFrom ignore a first line "From ..." (an mbox separator)
   */
  constructor(
    private readonly maxBytes: number,
    private readonly keep?: (key: string) => boolean,
    private readonly skipMboxFrom = false,
  ) {}

  /** One line (or piece of a long line, `cont`) of the block, without its terminator; never an empty line. */
  line(data: Buffer, cont: boolean): HeaderLineResult {
    const first = this.lines++ === 0;
    if (cont) {
      this.append(data);
      return 'continuation';
    }
    if (isWsp(data[0])) {
      if (this.curName === null) {
        this.malformed = true;
        return 'ignored';
      }
      this.append(data);
      return 'continuation';
    }
    const colon = fieldNameEnd(data);
    if (colon < 0) {
      if (first && this.skipMboxFrom && data.subarray(0, 5).toString('latin1') === 'From ') return 'ignored';
      this.flush();
      this.malformed = true;
      return 'not-header';
    }
    this.flush();
    let nameEnd = colon;
    while (isWsp(data[nameEnd - 1])) nameEnd--;
    const name = data.subarray(0, nameEnd).toString('latin1');
    if (/[^\x21-\x7e]/.test(name)) this.eightBit = true;
    const key = name.toLowerCase();
    this.curName = name;
    this.curKeep = this.keep ? this.keep(key) : true;
    if (this.curKeep) {
      if (this.used + nameEnd > this.maxBytes) {
        this.overflow = true;
        this.curKeep = false;
      } else {
        this.used += nameEnd;
      }
    }
    this.append(data.subarray(colon + 1));
    return 'field';
  }

  /** Ends the block: the field in progress is complete. */
  finish(): void {
    this.flush();
  }

  /** The first field with this lower-cased name. */
  get(key: string): RawHeaderField | undefined {
    return this.fields.find((f) => f.key === key);
  }

  private append(data: Buffer): void {
    if (!this.curKeep || data.length === 0) return;
    let take = data.length;
    if (this.used + take > this.maxBytes) {
      take = Math.max(0, this.maxBytes - this.used);
      this.overflow = true;
    }
    if (take > 0) {
      this.curParts.push(Buffer.from(data.subarray(0, take)));
      this.used += take;
    }
  }

  private flush(): void {
    if (this.curName === null) return;
    if (this.curKeep) {
      let raw = this.curParts.length === 1 ? this.curParts[0] : Buffer.concat(this.curParts);
      let s = 0;
      let e = raw.length;
      while (s < e && (isWsp(raw[s]) || raw[s] === 13 || raw[s] === 10)) s++;
      while (e > s && (isWsp(raw[e - 1]) || raw[e - 1] === 13 || raw[e - 1] === 10)) e--;
      raw = raw.subarray(s, e);
      const { text, latin1 } = decodeHeaderBytes(raw);
      if (latin1) this.eightBit = true;
      this.fields.push({ name: this.curName, key: this.curName.toLowerCase(), value: text, latin1 });
    }
    this.curName = null;
    this.curParts = [];
    this.curKeep = false;
  }
}
