/**
 * uuencoded files in text: "begin <mode> <name>", data lines whose first character gives
 * their decoded length ((c - 32) & 63), a zero-length line, "end". Only names and decoded
 * sizes are needed, so nothing is decoded or kept.
 */
import { decodeHeaderBytes } from '../header-parser.js';

const BEGIN = /^begin +[0-7]{3,4} +(.*?)[ \t]*$/;

/** The file name when the line is a "begin" line, else null. */
export function uuBeginName(line: Buffer): string | null {
  if (line.length < 10 || line[0] !== 0x62 /* b */ || line.length > 4096) return null;
  if (line.subarray(0, 6).toString('latin1') !== 'begin ') return null;
  const m = BEGIN.exec(line.toString('latin1'));
  if (!m || m[1] === '') return null;
  return decodeHeaderBytes(Buffer.from(m[1], 'latin1')).text;
}

/** The decoded length of a uuencoded data line, or -1 when the line is not one. */
export function uuLineLength(line: Buffer): number {
  if (line.length === 0) return -1;
  const c0 = line[0];
  if (c0 < 0x20 || c0 > 0x60) return -1;
  const len = (c0 - 0x20) & 0x3f;
  const chars = line.length - 1;
  const need = Math.ceil((len * 4) / 3);
  const full = Math.ceil(len / 3) * 4;
  if (chars < need || chars > full + 2) return -1; // +2: some encoders add a checksum character
  for (let i = 1; i < line.length; i++) {
    const c = line[i];
    if (c < 0x20 || c > 0x60) return -1;
  }
  return len;
}

export function isUuEnd(line: Buffer): boolean {
  return line.length >= 3 && line.length <= 8 && line.toString('latin1').trim() === 'end';
}

/** State of one uuencoded block being read. */
export class UuBlock {
  size = 0;
  /** A data line (or the end line) confirmed the "begin" line. */
  confirmed = false;
  constructor(readonly name: string) {}

  /** One line inside the block: 'more', 'end' (the block is complete) or 'bad' (not a block line). */
  line(data: Buffer): 'more' | 'end' | 'bad' {
    if (data.length === 0) return 'more'; // tolerated blank line
    if (isUuEnd(data)) {
      this.confirmed = true;
      return 'end';
    }
    const n = uuLineLength(data);
    if (n < 0) return 'bad';
    this.size += n;
    this.confirmed = true;
    return 'more';
  }
}
