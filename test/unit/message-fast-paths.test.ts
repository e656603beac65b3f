/**
 * The analyser's fast paths against their references: the WebAssembly base64 kernel against
 * the scalar decoder, and runs of body lines (MessageAnalyser.bodyRun) against reading every
 * line on its own (the `lineByLine` option), on large bodies, random chunkings and the inputs
 * where the two could part: boundaries cut across chunks, lines starting with "-", bare LF,
 * lines around maxLineBytes, "=" and invalid bytes inside base64.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { base64Kernel, base64KernelModule, KERNEL_WINDOW, nibbleTables } from '../../src/message/base64-kernel.js';
import { Base64Decoder } from '../../src/message/transfer-decoding.js';
import { MessageAnalyser } from '../../src/message/analyser.js';
import type { AnalyserOptions, AnalysisResult } from '../../src/message/types.js';
import { cutsFor, params } from './fuzz-common.js';
import { prng } from '../helpers/test-util.js';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const isAlphabet = (b: number): boolean => ALPHABET.includes(String.fromCharCode(b));
const isSpace = (b: number): boolean => b === 9 || b === 10 || b === 13 || b === 32;

test('base64 kernel: the module is valid and SIMD is available on this Node', () => {
  assert.ok(WebAssembly.validate(base64KernelModule()));
  assert.ok(base64Kernel, 'the kernel is in use');
});

test('base64 kernel: nibble tables classify every byte value', () => {
  const { lo, hi } = nibbleTables();
  for (let b = 0; b < 256; b++) {
    const bad = (lo[b & 15] & hi[b >> 4]) !== 0;
    assert.equal(bad, !(isAlphabet(b) || isSpace(b)), `byte ${b}`);
  }
});

test('base64 kernel: every byte value at every place of a block, in both loops', () => {
  const k = base64Kernel!;
  for (const size of [16, 64]) {
    for (let b = 0; b < 256; b++) {
      for (let at = 0; at < size; at++) {
        const block = Buffer.alloc(size, 0x41);
        block[at] = b;
        k.load(block, 0, size);
        const stop = k.scan(0, size);
        if (isAlphabet(b) || isSpace(b)) {
          assert.equal(stop, size, `byte ${b} at ${at} of ${size}`);
          assert.equal(k.count(), isAlphabet(b) ? size : size - 1);
        } else {
          // The 64-byte step falls back to 16-byte blocks and stops at the one holding it.
          assert.equal(stop, at - (at % 16), `byte ${b} at ${at} of ${size}`);
          assert.equal(k.count(), stop);
        }
      }
    }
  }
  // Never reads a block that does not fit before `end`.
  const buf = Buffer.alloc(100, 0x41);
  k.load(buf, 0, buf.length);
  assert.equal(k.scan(0, 79), 64);
  assert.equal(k.count(), 64);
  assert.equal(k.scan(3, 100), 99);
  assert.equal(k.count(), 96);
  assert.equal(k.scan(90, 100), 90);
  assert.equal(k.count(), 0);
});

/** Base64-ish bytes: mostly alphabet in lines, with pads, junk, 8-bit bytes and spaces mixed in. */
function base64ish(rand: () => number, length: number, junk: number): Buffer {
  const out = Buffer.alloc(length);
  let col = 0;
  for (let i = 0; i < length; i++) {
    const r = rand();
    if (col >= 76) {
      out[i] = r < 0.5 ? 13 : 10;
      if (out[i] === 10) col = 0;
      continue;
    }
    col++;
    if (r < junk) {
      const kinds = [61, 61, 32, 9, 0, 0x2d, 0x2e, 0x80, 0xff, 0x3d, Math.floor(rand() * 256)];
      out[i] = kinds[Math.floor(rand() * kinds.length)];
    } else out[i] = ALPHABET.charCodeAt(Math.floor(rand() * 64));
  }
  return out;
}

function decode(input: Buffer, cuts: number[], scalarOnly: boolean): { size: number; invalid: boolean } {
  const d = new Base64Decoder(undefined, scalarOnly);
  const bounds = [0, ...cuts, input.length];
  for (let i = 0; i < bounds.length - 1; i++) d.write(input.subarray(bounds[i], bounds[i + 1]));
  d.end();
  return { size: d.size, invalid: d.invalid };
}

test('Base64Decoder: size and invalid the same with the kernel as byte by byte', () => {
  fc.assert(
    fc.property(
      fc.integer(),
      fc.integer({ min: 0, max: 3 * KERNEL_WINDOW }),
      fc.constantFrom(0, 0, 0.0001, 0.001, 0.05, 0.5),
      fc.array(fc.nat(), { maxLength: 6 }),
      (seed, length, junk, raw) => {
        const input = base64ish(prng(seed), length, junk);
        const cuts = cutsFor(input.length, raw);
        const expected = decode(input, [], true);
        assert.deepEqual(decode(input, cuts, false), expected);
        assert.deepEqual(decode(input, [], false), expected);
      },
    ),
    params(300),
  );
  // Valid base64 decodes to its length; a lone character after "=" is invalid.
  const data = Buffer.alloc(200_000, 7);
  const text = Buffer.from(data.toString('base64').replace(/.{76}/g, '$&\r\n'));
  assert.deepEqual(decode(text, [], false), { size: data.length, invalid: false });
  assert.deepEqual(decode(Buffer.concat([text, Buffer.from('\r\nQ')]), [], false), { size: data.length, invalid: true });
});

// ---- runs of body lines ------------------------------------------------------------------

const BOUNDARY = 'b_1';
const INNER = 'in-2';

/** One body line of a part: the pieces that make the fast path and the line-by-line path part. */
function bodyLine(rand: () => number, maxLine: number, b64: boolean): string {
  const r = rand();
  const text = (n: number): string => {
    let s = '';
    for (let i = 0; i < n; i++) s += ALPHABET[Math.floor(rand() * 64)];
    return s;
  };
  if (r < 0.6) return text(b64 ? 76 : Math.floor(rand() * 90));
  if (r < 0.65) return `${text(Math.floor(rand() * 40))}==`;
  if (r < 0.7) return `${text(10)}\x00\xff-.${text(10)}`;
  if (r < 0.75) return '';
  if (r < 0.8) return `-${text(5)}`;
  if (r < 0.84) return `--${text(5)}`;
  if (r < 0.87) return `--${BOUNDARY}x`; // not the boundary: more after it
  if (r < 0.9) return text(maxLine - 2 + Math.floor(rand() * 5)); // around maxLineBytes
  if (r < 0.92) return `--${BOUNDARY}${' '.repeat(maxLine)}`; // too long to be a boundary
  if (r < 0.95) return `${text(30)}\r${text(3)}`; // a bare CR inside
  return ' \t';
}

/** A multipart message with big bodies and a nested multipart, line ends CRLF, LF or mixed. */
function bigMessage(seed: number, maxLine: number, lines: number): Buffer {
  const rand = prng(seed);
  const eol = (): string => (rand() < 0.1 ? '\n' : '\r\n');
  const out: string[] = [];
  const push = (l: string): void => {
    out.push(l + eol());
  };
  push('From: a@example.com');
  push(`Content-Type: multipart/mixed; boundary="${BOUNDARY}"`);
  push('');
  push('preamble');
  const parts = 1 + Math.floor(rand() * 4);
  for (let p = 0; p < parts; p++) {
    push(`--${BOUNDARY}${rand() < 0.2 ? ' \t' : ''}`);
    const kind = rand();
    if (kind < 0.2) {
      push(`Content-Type: multipart/alternative; boundary=${INNER}`);
      push('');
      push(`--${INNER}`);
      push('Content-Type: text/plain');
      push('');
      for (let i = 0; i < lines / 4; i++) push(bodyLine(rand, maxLine, false));
      push(`--${INNER}--`);
      continue;
    }
    const b64 = kind < 0.7;
    const type = kind < 0.5 ? 'application/pdf' : kind < 0.6 ? 'text/plain' : kind < 0.7 ? 'application/ms-tnef' : 'text/plain';
    push(`Content-Type: ${type}; name="f${p}.bin"`);
    if (b64) push('Content-Transfer-Encoding: base64');
    else if (rand() < 0.5) push('Content-Transfer-Encoding: quoted-printable');
    push('');
    const n = Math.floor(rand() * lines);
    for (let i = 0; i < n; i++) push(bodyLine(rand, maxLine, b64));
    // A uuencoded file inside a text part: found the same either way.
    if (!b64 && rand() < 0.3) {
      push('begin 644 x.txt');
      push('#86)C');
      push('`');
      push('end');
    }
  }
  if (rand() < 0.8) push(`--${BOUNDARY}--`);
  if (rand() < 0.5) push('epilogue');
  let s = out.join('');
  if (rand() < 0.3) s = s.replace(/\r?\n$/, '');
  return Buffer.from(s, 'latin1');
}

function analyse(buf: Buffer, cuts: number[], opts: AnalyserOptions): AnalysisResult {
  const a = new MessageAnalyser(opts);
  const bounds = [0, ...cuts, buf.length];
  for (let i = 0; i < bounds.length - 1; i++) {
    const piece = Buffer.from(buf.subarray(bounds[i], bounds[i + 1]));
    a.write(piece);
    piece.fill(0x2d); // nothing may keep a view into a chunk
  }
  return a.end();
}

/** Cuts near every boundary line (before, inside, after its dashes) and some random ones. */
function boundaryCuts(buf: Buffer, rand: () => number): number[] {
  const cuts = new Set<number>();
  for (let i = buf.indexOf('\n--'); i >= 0; i = buf.indexOf('\n--', i + 1)) {
    const d = Math.floor(rand() * 5) - 1;
    if (i + d > 0 && i + d < buf.length) cuts.add(i + d);
  }
  for (let i = 0; i < 5; i++) cuts.add(1 + Math.floor(rand() * (buf.length - 1)));
  return [...cuts].filter((c) => c > 0 && c < buf.length).sort((a, b) => a - b);
}

test('MessageAnalyser: runs of body lines give the result of reading line by line', () => {
  fc.assert(
    fc.property(
      fc.integer(),
      fc.constantFrom(1024, 1100, 4096),
      fc.integer({ min: 0, max: 600 }),
      fc.array(fc.nat(), { maxLength: 12 }),
      fc.boolean(),
      (seed, maxLine, lines, raw, nearBoundaries) => {
        const buf = bigMessage(seed, maxLine, lines);
        const opts = { maxLineBytes: maxLine };
        const reference = analyse(buf, [], { ...opts, lineByLine: true });
        assert.deepEqual(analyse(buf, [], opts), reference, 'whole');
        const cuts = nearBoundaries ? boundaryCuts(buf, prng(seed ^ 0x5a5a)) : cutsFor(buf.length, raw);
        assert.deepEqual(analyse(buf, cuts, opts), reference, 'chunked');
        assert.deepEqual(analyse(buf, cuts, { ...opts, lineByLine: true }), reference, 'chunked line by line');
      },
    ),
    params(300),
  );
});

test('MessageAnalyser: a long line in a base64 body is noted and the size still right', () => {
  const data = Buffer.alloc(3000, 1).toString('base64');
  const body = `${data.slice(0, 2000)}\r\n${data.slice(2000)}\r\n`;
  const msg = Buffer.from(`Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n${body}--b--\r\n`);
  for (const lineByLine of [false, true]) {
    const r = analyse(msg, [], { maxLineBytes: 1024, lineByLine });
    assert.equal(r.attachments[0].Size, 3000);
    assert.deepEqual(r.defects, ['line-too-long']);
  }
  const r = analyse(msg, [], {});
  assert.equal(r.attachments[0].Size, 3000);
  assert.deepEqual(r.defects, []);
});

test('MessageAnalyser: the 1 MB five-attachment message, in socket-sized chunks', () => {
  const rand = prng(7);
  const names = ['a.pdf', 'b.jpg', 'c.xls', 'd.zip', 'e.doc'];
  const sizes = names.map(() => 150_000 + Math.floor(rand() * 60_000));
  const parts = names.map((n, i) => {
    const data = Buffer.alloc(sizes[i]);
    for (let j = 0; j < data.length; j++) data[j] = Math.floor(rand() * 256);
    return `--B\r\nContent-Type: application/octet-stream; name="${n}"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="${n}"\r\n\r\n${data.toString('base64').replace(/.{1,76}/g, '$&\r\n')}`;
  });
  const msg = Buffer.from(`Subject: five\r\nContent-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nhello\r\n${parts.join('')}--B--\r\n`);
  const cuts: number[] = [];
  for (let at = 65536; at < msg.length; at += 65536) cuts.push(at);
  const r = analyse(msg, cuts, {});
  assert.deepEqual(
    r.attachments.map((a) => [a.Name, a.Size]),
    names.map((n, i) => [n, sizes[i]]),
  );
  assert.deepEqual(r.defects, []);
  assert.deepEqual(r, analyse(msg, cuts, { lineByLine: true }));
});
