/**
 * Incremental Content-Transfer-Encoding decoders (RFC 2045 §6). Each counts the decoded bytes
 * and, when given a sink, hands them on in pieces; none keeps more than a few bytes between
 * writes. Malformed input is decoded as far as it goes and noted in `invalid`.
 */

import { base64Kernel, KERNEL_WINDOW, type Base64Kernel } from './base64-kernel.js';

/** Below this many bytes a write is decoded by the scalar loop: the kernel call costs more. */
const KERNEL_MIN = 64;

export type ByteSink = (data: Buffer) => void;

export interface TransferDecoder {
  write(data: Uint8Array): void;
  end(): void;
  /** Decoded bytes so far. */
  readonly size: number;
  /** The input was not valid for the encoding (decoded best effort all the same). */
  readonly invalid: boolean;
}

export class IdentityDecoder implements TransferDecoder {
  size = 0;
  readonly invalid = false;
  constructor(private readonly sink?: ByteSink) {}
  write(data: Uint8Array): void {
    this.size += data.length;
    if (this.sink && data.length > 0) this.sink(Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  }
  end(): void {}
}

const B64_SKIP = -2; // whitespace
const B64_PAD = -3;
const B64_BAD = -1;
const B64 = (() => {
  const t = new Int8Array(256).fill(B64_BAD);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  for (let i = 0; i < 64; i++) t[alphabet.charCodeAt(i)] = i;
  for (const c of [9, 10, 13, 32]) t[c] = B64_SKIP;
  t[61] = B64_PAD;
  return t;
})();

/**
 * Base64: characters outside the alphabet are skipped (and make `invalid` true unless they
 * are whitespace); "=" ends a group, so concatenated encodings decode as such.
 */
export class Base64Decoder implements TransferDecoder {
  size = 0;
  invalid = false;
  private acc = 0;
  private bits = 0;
  /** Characters in the current 4-character group. */
  private group = 0;

  /** `scalarOnly`: never the SIMD kernel (the reference it is tested against). */
  constructor(
    private readonly sink?: ByteSink,
    private readonly scalarOnly = false,
  ) {}

  write(data: Uint8Array): void {
    if (!this.sink && !this.scalarOnly && base64Kernel && data.length >= KERNEL_MIN) {
      this.count(data, base64Kernel);
      return;
    }
    const out = this.sink ? Buffer.allocUnsafe(Math.ceil((data.length * 3) / 4) + 3) : null;
    const o = this.scalar(data, 0, data.length, out);
    if (out && o > 0) this.sink!(out.subarray(0, o));
  }

  /** Decodes data[from, to) byte by byte; returns the bytes written to `out`. */
  private scalar(data: Uint8Array, from: number, to: number, out: Buffer | null): number {
    let o = 0;
    let acc = this.acc;
    let bits = this.bits;
    let group = this.group;
    let n = 0;
    for (let i = from; i < to; i++) {
      const v = B64[data[i]];
      if (v >= 0) {
        acc = ((acc << 6) | v) & 0xffffff;
        bits += 6;
        group = (group + 1) & 3;
        if (bits >= 8) {
          bits -= 8;
          if (out) out[o++] = (acc >> bits) & 0xff;
          n++;
        }
      } else if (v === B64_PAD) {
        if (group === 1) this.invalid = true;
        acc = 0;
        bits = 0;
        group = 0;
      } else if (v === B64_BAD) {
        this.invalid = true;
      }
    }
    this.acc = acc;
    this.bits = bits;
    this.group = group;
    this.size += n;
    return o;
  }

  /**
   * Size only (no sink): runs of alphabet characters and whitespace are counted by the SIMD
   * kernel, and the 16-byte blocks it stops at (holding "=" or invalid bytes) and the tail go
   * through the scalar loop, which is what decides `invalid` and resets at "=".
   */
  private count(data: Uint8Array, k: Base64Kernel): void {
    for (let i = 0; i < data.length; ) {
      const w = Math.min(data.length - i, KERNEL_WINDOW);
      k.load(data, i, w);
      for (let p = 0; p < w; ) {
        const stop = k.scan(p, w);
        this.addCharacters(k.count());
        if (stop >= w) break;
        p = Math.min(w, stop + 16);
        this.scalar(data, i + stop, i + p, null);
      }
      i += w;
    }
  }

  /** `k` alphabet characters (and no "="), as the scalar loop would count them. */
  private addCharacters(k: number): void {
    const bits = this.bits + 6 * k;
    this.size += bits >> 3;
    this.bits = bits & 7;
    this.group = (this.group + k) & 3;
    // Only the bytes handed to a sink come from acc, and there is none here.
    this.acc = 0;
  }

  end(): void {
    if (this.group === 1) this.invalid = true;
    this.acc = 0;
    this.bits = 0;
    this.group = 0;
  }
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/**
 * Quoted-printable: "=XX" and soft line breaks ("=" before CRLF or LF). A "=" not followed by
 * either is kept as it is (and makes `invalid` true). Trailing whitespace before a line break
 * is kept (RFC 2045 says to drop it; the difference is at most a few bytes of the size).
 */
export class QuotedPrintableDecoder implements TransferDecoder {
  size = 0;
  invalid = false;
  /** 0 normal, 1 after "=", 2 after "=" and a hex digit, 3 after "=" CR. */
  private state = 0;
  private hex1 = 0;

  constructor(private readonly sink?: ByteSink) {}

  write(chunk: Uint8Array): void {
    const data = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const out = this.sink ? Buffer.allocUnsafe(data.length + 3) : null;
    let o = 0;
    let i = 0;
    while (i < data.length) {
      if (this.state === 0) {
        // Copy the run up to the next "=" as it is.
        const eq = data.indexOf(61, i);
        const end = eq < 0 ? data.length : eq;
        if (out) data.copy(out, o, i, end);
        o += end - i;
        if (eq < 0) break;
        this.state = 1;
        i = eq + 1;
        continue;
      }
      const c = data[i++];
      if (this.state === 1) {
        if (hexValue(c) >= 0) {
          this.hex1 = c;
          this.state = 2;
        } else if (c === 13) {
          this.state = 3;
        } else if (c === 10) {
          this.state = 0; // soft line break
        } else {
          this.invalid = true;
          if (out) out[o] = 61;
          o++;
          this.state = 0;
          i--; // read this byte again as an ordinary one
        }
      } else if (this.state === 2) {
        const h = hexValue(c);
        this.state = 0;
        if (h >= 0) {
          if (out) out[o] = (hexValue(this.hex1) << 4) | h;
          o++;
        } else {
          this.invalid = true;
          if (out) {
            out[o] = 61;
            out[o + 1] = this.hex1;
          }
          o += 2;
          i--;
        }
      } else {
        // after "=" CR
        this.state = 0;
        if (c !== 10) {
          this.invalid = true;
          i--;
        }
      }
    }
    this.size += o;
    if (out && o > 0) this.sink!(out.subarray(0, o));
  }

  end(): void {
    if (this.state === 1 || this.state === 2) {
      const tail = this.state === 1 ? Buffer.from([61]) : Buffer.from([61, this.hex1]);
      this.state = 0;
      this.invalid = true;
      this.size += tail.length;
      if (this.sink) this.sink(tail);
    }
    this.state = 0;
  }
}

/** The decoder for a Content-Transfer-Encoding value (lower-cased); unknown ones pass bytes through. */
export function createTransferDecoder(cte: string, sink?: ByteSink, scalar = false): TransferDecoder {
  switch (cte) {
    case 'base64':
      return new Base64Decoder(sink, scalar);
    case 'quoted-printable':
      return new QuotedPrintableDecoder(sink);
    default:
      return new IdentityDecoder(sink);
  }
}
