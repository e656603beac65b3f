/**
 * Shared pieces of the fuzz tests (test/unit/fuzz-*.test.ts): run counts, fast-check settings
 * and arbitraries for hostile protocol input.
 *
 * Every property runs `runs(n)` cases: n scaled by FUZZ_RUNS (a factor, default 1), e.g.
 *   FUZZ_RUNS=20 node --import tsx --test test/unit/fuzz-*.test.ts
 * FUZZ_SEED replays a run (fast-check prints the seed and path of a failure; pass the seed
 * here, or copy the counterexample into the property's `examples` as a regression case).
 * FUZZ_REPORT names a file to which each test file appends, at exit, one JSON line with the
 * properties checked and the cases fast-check actually ran (tools/fuzz.ts sums them).
 */
import { appendFileSync } from 'node:fs';
import { basename } from 'node:path';
import fc from 'fast-check';

const scale = (() => {
  const v = Number(process.env.FUZZ_RUNS ?? '1');
  return Number.isFinite(v) && v > 0 ? v : 1;
})();

const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : undefined;

/** The number of cases for a property whose CI-sized run is `n`. */
export function runs(n: number): number {
  return Math.max(1, Math.round(n * scale));
}

const reportFile = process.env.FUZZ_REPORT;
const tally = { properties: 0, cases: 0, failed: 0 };
if (reportFile) {
  process.on('exit', () => appendFileSync(reportFile, `${JSON.stringify({ file: basename(process.argv[1] ?? '?'), ...tally })}\n`));
}

/** Counts what a property ran, then fails as fast-check's own reporter would. */
function countingReporter<T>(out: fc.RunDetails<T>): void {
  tally.properties++;
  tally.cases += out.numRuns;
  if (out.failed) {
    tally.failed++;
    throw new Error(fc.defaultReportMessage(out));
  }
}

/** fast-check parameters: `n` runs (scaled), the pinned seed if any, and regression examples. */
export function params<T>(n: number, examples: NoInfer<T>[] = []): fc.Parameters<T> {
  return { numRuns: runs(n), seed, examples, ...(reportFile ? { reporter: countingReporter } : {}) };
}

/** Characters that matter to SMTP parsers, to make random strings hit interesting paths. */
const SPECIAL = [
  '<', '>', '@', ':', '"', '\\', ' ', '\t', '.', ',', '=', '+', '[', ']', '%', '!', '-', ';',
  '\r', '\n', '\0', '\x7f', '\x1b', 'é', 'ü', '€', '日', '😀', '\u2028', '\ufeff', '\ufffd',
];

/** One UTF-16 unit of a lone surrogate: what a JS string can hold but UTF-8 cannot. */
const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c));

/** A character biased towards protocol punctuation, control bytes and non-ASCII. */
export const hostileChar: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }) },
  { weight: 4, arbitrary: fc.constantFrom(...SPECIAL) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 1 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
  { weight: 1, arbitrary: loneSurrogate },
);

/** A string of hostile characters. */
export function hostileString(maxLength = 80): fc.Arbitrary<string> {
  return fc.string({ unit: hostileChar, maxLength });
}

/** Strings of `parts` glued together: lets a generator mix valid fragments with junk. */
export function glue(parts: fc.Arbitrary<string>, maxParts = 8): fc.Arbitrary<string> {
  return fc.array(parts, { maxLength: maxParts }).map((a) => a.join(''));
}

/** Applies up to a few random edits (insert, delete, replace, duplicate, cut) to a string. */
export function mutateString(base: fc.Arbitrary<string>, maxEdits = 4): fc.Arbitrary<string> {
  const edit = fc.tuple(fc.nat(), fc.nat({ max: 4 }), hostileString(6), fc.nat({ max: 8 }));
  return fc.tuple(base, fc.array(edit, { maxLength: maxEdits })).map(([s, edits]) => {
    for (const [at, kind, text, len] of edits) {
      const i = s.length ? at % (s.length + 1) : 0;
      if (kind === 0) s = s.slice(0, i) + text + s.slice(i);
      else if (kind === 1) s = s.slice(0, i) + s.slice(i + len + 1);
      else if (kind === 2) s = s.slice(0, i) + text + s.slice(i + text.length);
      else if (kind === 3) s = s.slice(0, i) + s.slice(i, i + len + 1).repeat(2) + s.slice(i);
      else s = s.slice(0, i);
    }
    return s;
  });
}

/** Applies up to a few random byte edits (flip, insert, delete, cut) to a buffer. */
export function mutateBytes(base: fc.Arbitrary<Buffer>, maxEdits = 6): fc.Arbitrary<Buffer> {
  const edit = fc.tuple(fc.nat(), fc.nat({ max: 3 }), fc.uint8Array({ minLength: 1, maxLength: 8 }), fc.nat({ max: 16 }));
  return fc.tuple(base, fc.array(edit, { maxLength: maxEdits })).map(([b, edits]) => {
    for (const [at, kind, bytes, len] of edits) {
      const i = b.length ? at % (b.length + 1) : 0;
      if (kind === 0) b = Buffer.concat([b.subarray(0, i), bytes, b.subarray(i)]);
      else if (kind === 1) b = Buffer.concat([b.subarray(0, i), b.subarray(i + len + 1)]);
      else if (kind === 2) {
        b = Buffer.from(b);
        for (let k = 0; k < bytes.length && i + k < b.length; k++) b[i + k] = bytes[k];
      } else b = b.subarray(0, i);
    }
    return b;
  });
}

/** Bytes biased towards CR, LF, dots, NUL and 8-bit values: the data path's hard cases. */
export function byteSoup(maxLength = 300): fc.Arbitrary<Buffer> {
  const unit = fc.oneof(
    { weight: 5, arbitrary: fc.constantFrom('\r', '\n', '.', '\r\n', '\r\n.', '.\r\n', '\n.\n', '\r\n.\r\n', '\0', '-', '--') },
    { weight: 4, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 6 }) },
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 6 }).map((u) => Buffer.from(u).toString('latin1')) },
  );
  return fc.array(unit, { maxLength: Math.ceil(maxLength / 3) }).map((a) => Buffer.from(a.join(''), 'latin1').subarray(0, maxLength));
}

/** Sorted distinct cut offsets inside [1, length). */
export function cutsFor(length: number, raw: number[]): number[] {
  if (length < 2) return [];
  return [...new Set(raw.map((r) => 1 + (r % (length - 1))))].sort((a, b) => a - b);
}

/** An SMTP reply as wire text: well-formed lines, no bare CR/LF, none over 512 octets. */
export function checkWireReply(text: string, code?: number): string | null {
  if (!text.endsWith('\r\n')) return 'does not end with CRLF';
  const lines = text.slice(0, -2).split('\r\n');
  for (const [i, line] of lines.entries()) {
    if (/[\r\n]/.test(line)) return `bare CR or LF in line ${JSON.stringify(line)}`;
    if (Buffer.byteLength(line) + 2 > 512) return `line of ${Buffer.byteLength(line) + 2} octets`;
    const m = /^(\d\d\d)([ -]?)/.exec(line);
    if (!m) return `no reply code in ${JSON.stringify(line)}`;
    if (code !== undefined && Number(m[1]) !== code) return `code ${m[1]} instead of ${code}`;
    if (i > 0 && m[1] !== lines[0].slice(0, 3)) return 'reply code changes between lines';
    const last = i === lines.length - 1;
    if (!last && m[2] !== '-') return `continuation line without "-": ${JSON.stringify(line)}`;
    if (last && m[2] === '-') return `last line with "-": ${JSON.stringify(line)}`;
    if (last && m[2] === '' && line.length > 3) return `no space after the code: ${JSON.stringify(line)}`;
  }
  return null;
}
