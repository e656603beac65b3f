/**
 * BinHex 4.0 (RFC 1741): after the line "(This file must be converted with BinHex 4.0)", the
 * data between two ":" is 6-bit encoded over a 64-character alphabet, then run-length encoded
 * (0x90 marker). The decoded stream starts with a header: name length, name (Mac Roman),
 * version, type, creator, flags, data fork length, resource fork length, CRC-16 (XMODEM).
 * Only the header is decoded; the rest of the data is skipped.
 */
import { decodeCharset } from '../header-values.js';

const ALPHABET = '!"#$%&\'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr';
const DECODE = (() => {
  const t = new Int8Array(256).fill(-1);
  for (let i = 0; i < ALPHABET.length; i++) t[ALPHABET.charCodeAt(i)] = i;
  return t;
})();

/** The start of the line in front of BinHex data ("... with BinHex 4.0)", or macutils' "...; you knew that already.)"). */
export const BINHEX_MARKER = '(This file must be converted';

/** CRC-16/XMODEM (polynomial 0x1021, initial 0), as BinHex uses it. */
export function crc16xmodem(data: Uint8Array, crc = 0): number {
  for (let i = 0; i < data.length; i++) {
    crc ^= data[i] << 8;
    for (let b = 0; b < 8; b++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

export interface BinHexHeader {
  name: string;
  dataLength: number;
  resourceLength: number;
  crcOk: boolean;
}

/** Decodes the characters between the two colons, only as far as the header. */
export class BinHexDecoder {
  header: BinHexHeader | null = null;
  /** A character outside the alphabet was met. */
  invalid = false;
  private acc = 0;
  private bits = 0;
  private afterMarker = false;
  private last = -1;
  private readonly out = Buffer.alloc(1 + 255 + 1 + 4 + 4 + 2 + 4 + 4 + 2);
  private len = 0;

  get done(): boolean {
    return this.header !== null || this.invalid;
  }

  /** Encoded characters (whitespace skipped). Returns false once nothing more is wanted. */
  write(chars: Uint8Array): boolean {
    for (let i = 0; i < chars.length && !this.done; i++) {
      const c = chars[i];
      if (c === 32 || c === 9 || c === 13 || c === 10) continue;
      const v = DECODE[c];
      if (v < 0) {
        this.invalid = true;
        break;
      }
      this.acc = ((this.acc << 6) | v) & 0xffff;
      this.bits += 6;
      if (this.bits >= 8) {
        this.bits -= 8;
        this.rle((this.acc >> this.bits) & 0xff);
      }
    }
    return !this.done;
  }

  private rle(b: number): void {
    if (this.afterMarker) {
      this.afterMarker = false;
      if (b === 0) this.put(0x90);
      else for (let i = 1; i < b && !this.done; i++) this.put(this.last);
      return;
    }
    if (b === 0x90) {
      this.afterMarker = true;
      return;
    }
    this.put(b);
  }

  private put(b: number): void {
    if (this.done) return;
    this.last = b;
    this.out[this.len++] = b;
    const n = this.out[0];
    const headerLen = 1 + n + 1 + 4 + 4 + 2 + 4 + 4;
    if (this.len === headerLen + 2) {
      const crc = this.out.readUInt16BE(headerLen);
      this.header = {
        name: decodeCharset(this.out.subarray(1, 1 + n), 'macintosh'),
        dataLength: this.out.readUInt32BE(1 + n + 1 + 4 + 4 + 2),
        resourceLength: this.out.readUInt32BE(1 + n + 1 + 4 + 4 + 2 + 4),
        crcOk: crc16xmodem(this.out.subarray(0, headerLen)) === crc,
      };
    }
  }
}
