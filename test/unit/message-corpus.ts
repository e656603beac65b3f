/**
 * Builders for the message-analysis tests: messages with CRLF line endings, and the embedded
 * formats (uuencode, BinHex 4.0, TNEF) encoded from their documented definitions.
 */
import assert from 'node:assert/strict';
import { MessageAnalyser } from '../../src/message/analyser.js';
import type { AnalyserOptions, AnalysisResult, MimePart } from '../../src/message/types.js';

/** Lines joined with CRLF, with a final CRLF. */
export function crlf(...lines: string[]): string {
  return lines.join('\r\n') + '\r\n';
}

export function bytes(s: string | Buffer): Buffer {
  return typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
}

/** Analyses the message whole, then in chunks of several sizes; every run must agree. */
export function analyse(message: string | Buffer, options?: AnalyserOptions): AnalysisResult {
  const buf = bytes(message);
  const whole = run(buf, [buf.length || 1], options);
  for (const size of [1, 2, 3, 7, 64, 1000]) {
    if (size >= buf.length || (size < 64 && buf.length > 200_000)) continue;
    assert.deepEqual(run(buf, [size], options), whole, `chunks of ${size} bytes`);
  }
  assert.deepEqual(run(buf, [5, 1, 13, 2, 97], options), whole, 'uneven chunks');
  return whole;
}

function run(buf: Buffer, sizes: number[], options?: AnalyserOptions): AnalysisResult {
  const a = new MessageAnalyser(options);
  let i = 0;
  for (let k = 0; i < buf.length; k++) {
    const n = sizes[k % sizes.length];
    // A fresh copy each time: the analyser must not keep references into the caller's buffers.
    a.write(Buffer.from(buf.subarray(i, i + n)));
    i += n;
  }
  return a.end();
}

/** The bytes of a structure row, as a script would read them from the stored file. */
export function slice(message: string | Buffer, part: MimePart): string {
  return bytes(message).subarray(part.Start, part.End).toString('utf8');
}

/** Structure rows reduced to Path and type, for a compact comparison. */
export function shape(r: AnalysisResult): string[] {
  return r.structure.map((p) => `${p.Path} ${p.ContentType}/${p.ContentSubtype}`);
}

/** Every row lies inside the message, children inside their parents. */
export function assertSane(r: AnalysisResult): void {
  for (const p of r.structure) {
    assert.ok(p.Start >= 0 && p.Start <= p.End && p.End <= r.size, `row ${p.Path}: ${p.Start}..${p.End} of ${r.size}`);
  }
  for (const a of r.attachments) {
    assert.ok(a.MIMESection >= 1 && a.MIMESection <= r.structure.length, `attachment ${a.Name} section ${a.MIMESection}`);
    assert.ok(a.Size >= 0);
  }
}

// ---- uuencode -------------------------------------------------------------------------------

function uuChar(v: number): string {
  return v === 0 ? '`' : String.fromCharCode(32 + v);
}

/** Classic uuencode: "begin 644 name", 45-byte lines, "`", "end". */
export function uuencode(name: string, data: Buffer, mode = '644'): string[] {
  const lines = [`begin ${mode} ${name}`];
  for (let i = 0; i < data.length; i += 45) {
    const chunk = data.subarray(i, i + 45);
    let line = uuChar(chunk.length);
    for (let j = 0; j < chunk.length; j += 3) {
      const b0 = chunk[j];
      const b1 = chunk[j + 1] ?? 0;
      const b2 = chunk[j + 2] ?? 0;
      line += uuChar(b0 >> 2) + uuChar(((b0 & 3) << 4) | (b1 >> 4)) + uuChar(((b1 & 15) << 2) | (b2 >> 6)) + uuChar(b2 & 63);
    }
    lines.push(line);
  }
  lines.push('`', 'end');
  return lines;
}

// ---- BinHex 4.0 (RFC 1741) ---------------------------------------------------------------------

const HQX = '!"#$%&\'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr';

/** CRC-16/XMODEM, as BinHex computes it. */
export function crcXmodem(data: Buffer): number {
  let crc = 0;
  for (const b of data) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

function withCrc(b: Buffer): Buffer {
  const c = Buffer.alloc(2);
  c.writeUInt16BE(crcXmodem(b));
  return Buffer.concat([b, c]);
}

/** Run-length encoding: runs of 3 to 255 equal bytes as (byte, 0x90, count); 0x90 itself as 0x90 0x00. */
function rle90(data: Buffer): Buffer {
  const out: number[] = [];
  for (let i = 0; i < data.length; ) {
    const b = data[i];
    let run = 1;
    while (i + run < data.length && data[i + run] === b && run < 255) run++;
    if (b === 0x90) {
      out.push(0x90, 0x00);
      i += 1;
    } else if (run >= 3) {
      out.push(b, 0x90, run);
      i += run;
    } else {
      out.push(b);
      i += 1;
    }
  }
  return Buffer.from(out);
}

/** A BinHex 4.0 file: marker line, then ":" + 64-character lines + ":". */
export function binhex(name: string, data: Buffer, resource = Buffer.alloc(0), marker = true): string[] {
  const nameBytes = Buffer.from(name, 'latin1');
  const head = Buffer.alloc(1 + nameBytes.length + 1 + 4 + 4 + 2 + 4 + 4);
  let p = 0;
  head[p++] = nameBytes.length;
  nameBytes.copy(head, p);
  p += nameBytes.length;
  head[p++] = 0; // version
  head.write('TEXT', p, 'latin1');
  p += 4;
  head.write('ttxt', p, 'latin1');
  p += 4;
  head.writeUInt16BE(0, p);
  p += 2;
  head.writeUInt32BE(data.length, p);
  p += 4;
  head.writeUInt32BE(resource.length, p);
  const stream = rle90(Buffer.concat([withCrc(head), withCrc(data), withCrc(resource)]));
  let text = '';
  for (let i = 0; i < stream.length; i += 3) {
    const n = Math.min(3, stream.length - i);
    const b0 = stream[i];
    const b1 = n > 1 ? stream[i + 1] : 0;
    const b2 = n > 2 ? stream[i + 2] : 0;
    const v = [b0 >> 2, ((b0 & 3) << 4) | (b1 >> 4), ((b1 & 15) << 2) | (b2 >> 6), b2 & 63];
    for (let k = 0; k < n + 1; k++) text += HQX[v[k]];
  }
  text = `:${text}:`;
  const lines: string[] = marker ? ['(This file must be converted with BinHex 4.0)', ''] : [];
  for (let i = 0; i < text.length; i += 64) lines.push(text.slice(i, i + 64));
  return lines;
}

// ---- TNEF (MS-OXTNEF) ------------------------------------------------------------------------

export const TNEF = {
  signature: 0x223e9f78,
  attTnefVersion: 0x00089006,
  attOemCodepage: 0x00069007,
  attMessageClass: 0x00078008,
  attAttachRendData: 0x00069002,
  attAttachTitle: 0x00018010,
  attAttachData: 0x0006800f,
  attAttachment: 0x00069005,
};

/** One attribute: level, id, length, data, checksum (sum of the data bytes mod 65536). */
export function tnefAttribute(level: number, id: number, data: Buffer, badChecksum = false): Buffer {
  const h = Buffer.alloc(9);
  h[0] = level;
  h.writeUInt32LE(id >>> 0, 1);
  h.writeUInt32LE(data.length, 5);
  let sum = 0;
  for (const b of data) sum = (sum + b) & 0xffff;
  const c = Buffer.alloc(2);
  c.writeUInt16LE(badChecksum ? (sum + 1) & 0xffff : sum);
  return Buffer.concat([h, data, c]);
}

function pad4(b: Buffer): Buffer {
  const extra = (4 - (b.length % 4)) % 4;
  return extra ? Buffer.concat([b, Buffer.alloc(extra)]) : b;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}

/** MAPI properties (MS-OXTNEF §2.1.3.4): PR_ATTACH_METHOD, PR_ATTACH_LONG_FILENAME (Unicode), a named property, PR_ATTACH_EXTENSION (8-bit). */
export function mapiProps(longName: string, extension: string): Buffer {
  const props: Buffer[] = [];
  // PR_ATTACH_METHOD (0x3705, PT_LONG): 1 = by value
  props.push(u32((0x3705 << 16) | 0x0003), u32(1));
  // a named property (id >= 0x8000), MNID_STRING, PT_BOOLEAN: must be skipped correctly
  const nameUtf16 = Buffer.from('X-Test\u0000', 'utf16le');
  props.push(u32((0x8001 << 16) | 0x000b), Buffer.alloc(16, 0xab), u32(1), u32(nameUtf16.length), pad4(nameUtf16), u32(1));
  // PR_ATTACH_LONG_FILENAME (0x3707, PT_UNICODE)
  const ln = Buffer.from(longName + '\u0000', 'utf16le');
  props.push(u32((0x3707 << 16) | 0x001f), u32(1), u32(ln.length), pad4(ln));
  // PR_ATTACH_EXTENSION (0x3703, PT_STRING8)
  const ext = Buffer.from(extension + '\u0000', 'latin1');
  props.push(u32((0x3703 << 16) | 0x001e), u32(1), u32(ext.length), pad4(ext));
  return Buffer.concat([u32(4), ...props]);
}

export interface TnefFile {
  /** attAttachTitle (8-bit, in the code page). */
  title?: string;
  data?: Buffer;
  /** PR_ATTACH_LONG_FILENAME in attAttachment. */
  longName?: string;
  badChecksum?: boolean;
}

/** A TNEF stream with the usual message attributes and one attachment group per file. */
export function tnef(files: TnefFile[], codepage = 1252): Buffer {
  const parts: Buffer[] = [];
  const head = Buffer.alloc(6);
  head.writeUInt32LE(TNEF.signature);
  head.writeUInt16LE(0x1234, 4);
  parts.push(head);
  parts.push(tnefAttribute(1, TNEF.attTnefVersion, u32(0x00010000)));
  parts.push(tnefAttribute(1, TNEF.attOemCodepage, Buffer.concat([u32(codepage), u32(0)])));
  parts.push(tnefAttribute(1, TNEF.attMessageClass, Buffer.from('IPM.Microsoft Mail.Note\u0000', 'latin1')));
  for (const f of files) {
    const rend = Buffer.alloc(14);
    rend.writeUInt16LE(1, 0); // AttachType: file
    rend.writeUInt32LE(0xffffffff, 2); // position
    rend.writeUInt16LE(0, 6);
    rend.writeUInt16LE(0, 8);
    rend.writeUInt32LE(0, 10);
    parts.push(tnefAttribute(2, TNEF.attAttachRendData, rend));
    if (f.title !== undefined) parts.push(tnefAttribute(2, TNEF.attAttachTitle, Buffer.from(f.title + '\u0000', 'latin1')));
    if (f.data) parts.push(tnefAttribute(2, TNEF.attAttachData, f.data, f.badChecksum));
    if (f.longName !== undefined) {
      const dot = f.longName.lastIndexOf('.');
      parts.push(tnefAttribute(2, TNEF.attAttachment, mapiProps(f.longName, dot >= 0 ? f.longName.slice(dot) : '')));
    }
  }
  return Buffer.concat(parts);
}

/** Base64 in 76-character lines. */
export function base64Lines(data: Buffer): string[] {
  const s = data.toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < s.length; i += 76) lines.push(s.slice(i, i + 76));
  return lines;
}

/** Deterministic bytes for test content. */
export function pseudoRandom(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}
