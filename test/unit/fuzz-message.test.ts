/**
 * Fuzzing of the MIME analyser (src/message/): generated MIME trees (multiparts, digests,
 * message/rfc822, transfer encodings, uuencode, BinHex, TNEF, RFC 2047/2231 names, folded and
 * broken headers, LF or CRLF line ends), byte mutations of them, raw byte soups and deep
 * nesting, fed in random chunks. Invariants: never throws; the same result whatever the
 * chunking; size is the input's; 0 <= Start <= End <= size for every row, rows in document
 * order, any two rows nested or disjoint; the limits (rows, depth, attachments, header bytes)
 * hold while the bytes arrive; retained memory stays bounded on pathological input.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import fc from 'fast-check';
import { MessageAnalyser } from '../../src/message/analyser.js';
import type { AnalyserOptions, AnalysisResult } from '../../src/message/types.js';
import { base64Lines, binhex, tnef, uuencode } from './message-corpus.js';
import { byteSoup, cutsFor, hostileString, mutateBytes, params, runs } from './fuzz-common.js';

// ---- generated MIME ------------------------------------------------------------------------

type Node =
  | { kind: 'leaf'; headers: string[]; body: string[] }
  | { kind: 'multipart'; headers: string[]; boundary: string; preamble: string[]; parts: Node[]; epilogue: string[]; closed: boolean; pad: string }
  | { kind: 'message'; headers: string[]; inner: Node };

const word = fc.stringMatching(/^[A-Za-z0-9._-]{1,12}$/);
const fileName = fc.oneof(
  word.map((w) => `${w}.txt`),
  fc.constantFrom('winmail.dat', 'a b.pdf', 'ünï.doc', 'x.exe', '', '"q".zip', 'a;b.txt'),
);

/** A parameter `name=value` in one of the ways mail programs write it. */
const param = (name: string): fc.Arbitrary<string> =>
  fc.oneof(
    fileName.map((f) => `${name}="${f.replace(/"/g, '\\"')}"`),
    word.map((w) => `${name}=${w}`),
    fileName.map((f) => `${name}*=utf-8''${encodeURIComponent(f)}`),
    fc.tuple(word, word).map(([a, b]) => `${name}*0="${a}"; ${name}*1="${b}"`),
    fileName.map((f) => `${name}="=?utf-8?B?${Buffer.from(f).toString('base64')}?="`),
    fc.constantFrom(`${name}=`, `${name}="unterminated`, `${name}*=bad''%ZZ`, `${name}*=x'y'`),
  );

const contentType = fc.oneof(
  fc.constantFrom('text/plain', 'text/html', 'application/octet-stream', 'image/png', 'application/pdf', 'application/x-uuencode'),
  fc.constantFrom('application/mac-binhex40', 'application/ms-tnef', 'message/delivery-status', 'TEXT/Plain', 'text', '', '/', 'multipart/mixed'),
);

const cte = fc.constantFrom('', '7bit', '8bit', 'binary', 'base64', 'quoted-printable', 'x-uuencode', 'BASE64', 'bogus');

/** A few header lines: folded, junk, 8-bit, duplicated. */
const junkHeaders = fc.array(
  fc.oneof(
    fc.tuple(word, hostileString(30)).map(([n, v]) => `X-${n}: ${v.replace(/[\r\n]/g, '')}`),
    fc.constantFrom('X-Folded: a\r\n\tb\r\n  c', ' leading continuation', 'no colon here', ': empty name', 'Bad Name: x', 'X-8bit: \xe9t\xe9', 'X-Empty:'),
  ),
  { maxLength: 3 },
);

const textLines = fc.array(
  fc.oneof(
    { weight: 4, arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength: 60 }).map((s) => s.replace(/[\r\n]/g, '')) },
    { weight: 1, arbitrary: hostileString(40).map((s) => s.replace(/[\r\n]/g, '')) },
    { weight: 1, arbitrary: fc.constantFrom('', '--', '---', '.', 'begin 644 x', 'end', '`', '(This file must be converted with BinHex 4.0)', ':', '=', '=3D', '=\t', '--b1', '--b1--', '--b2 ') },
  ),
  { maxLength: 8 },
);

const qpLines = fc.array(fc.string({ unit: fc.constantFrom('a', ' ', '=', '3', 'D', 'F', '0', '\t', 'é', 'z'), maxLength: 40 }), { maxLength: 6 });
const smallBytes = fc.uint8Array({ maxLength: 150 }).map((u) => Buffer.from(u));

const embedded = fc.oneof(
  fc.tuple(fileName, smallBytes).map(([n, d]) => uuencode(n || 'x', d)),
  fc.tuple(fileName, smallBytes, fc.boolean()).map(([n, d, m]) => binhex(n || 'x', d, Buffer.alloc(0), m)),
);

const tnefBody = fc
  .array(fc.record({ title: fc.option(fileName, { nil: undefined }), data: fc.option(smallBytes, { nil: undefined }), longName: fc.option(fileName, { nil: undefined }), badChecksum: fc.boolean() }), { maxLength: 3 })
  .chain((files) => mutateBytes(fc.constant(tnef(files)), 2))
  .map((b) => base64Lines(b));

const leaf: fc.Arbitrary<Node> = fc
  .tuple(contentType, fc.option(param('name')), fc.option(fc.tuple(fc.constantFrom('attachment', 'inline', 'ATTACHMENT', 'bogus'), fc.option(param('filename')))), cte, junkHeaders)
  .chain(([ct, name, disp, enc, junk]) => {
    const headers = [...junk];
    if (ct) headers.push(`Content-Type: ${ct}${name ? `; ${name}` : ''}`);
    if (disp) headers.push(`Content-Disposition: ${disp[0]}${disp[1] ? `;\r\n ${disp[1]}` : ''}`);
    if (enc) headers.push(`Content-Transfer-Encoding: ${enc}`);
    const body: fc.Arbitrary<string[]> =
      enc.toLowerCase() === 'base64'
        ? fc.oneof(smallBytes.map(base64Lines), tnefBody, textLines)
        : enc === 'quoted-printable'
          ? qpLines
          : ct === 'application/ms-tnef'
            ? tnefBody
            : fc.oneof(textLines, embedded, fc.tuple(textLines, embedded, textLines).map(([a, b, c]) => [...a, ...b, ...c]));
    return body.map((b) => ({ kind: 'leaf' as const, headers, body: b }));
  });

const boundary = fc.oneof(word, fc.constantFrom('b1', 'b2', "'()+_,-./:=?", 'a b', '=_Part_1', 'x'.repeat(70)));

const { node } = fc.letrec((tie) => ({
  node: fc.oneof({ maxDepth: 5, depthIdentifier: 'mime' }, leaf, tie('multipart'), tie('message')) as fc.Arbitrary<Node>,
  multipart: fc
    .tuple(
      fc.constantFrom('mixed', 'alternative', 'digest', 'related', 'MIXED'),
      boundary,
      fc.constantFrom('"', '', "'"),
      fc.array(tie('node') as fc.Arbitrary<Node>, { maxLength: 4, depthIdentifier: 'mime' }),
      textLines,
      textLines,
      fc.boolean(),
      fc.constantFrom('', ' ', '\t ', 'x'),
      junkHeaders,
    )
    .map(([sub, b, q, parts, preamble, epilogue, closed, pad, junk]) => ({
      kind: 'multipart' as const,
      headers: [...junk, `Content-Type: multipart/${sub};\r\n boundary=${q}${b}${q}`],
      boundary: b,
      preamble,
      parts,
      epilogue,
      closed,
      pad,
    })),
  message: fc
    .tuple(tie('node') as fc.Arbitrary<Node>, fc.constantFrom('message/rfc822', 'message/global', 'MESSAGE/RFC822'), fc.constantFrom('', '7bit', 'base64'), junkHeaders)
    .map(([inner, ct, enc, junk]) => ({ kind: 'message' as const, headers: [...junk, `Content-Type: ${ct}`, ...(enc ? [`Content-Transfer-Encoding: ${enc}`] : [])], inner })),
}));

function render(n: Node): string[] {
  const out = [...n.headers.flatMap((h) => h.split('\r\n')), ''];
  if (n.kind === 'leaf') return [...out, ...n.body];
  if (n.kind === 'message') return [...out, ...render(n.inner)];
  out.push(...n.preamble);
  for (const p of n.parts) out.push(`--${n.boundary}${n.pad === 'x' ? '' : n.pad}`, ...render(p));
  if (n.closed) out.push(`--${n.boundary}--${n.pad === 'x' ? '' : n.pad}`, ...n.epilogue);
  return out;
}

const topHeaders = fc.array(
  fc.oneof(
    fc.constantFrom('From: A <a@example.com>', 'To: b@example.org, "C, D" <c@example.net>', 'Cc: group: x@y, z@w;', 'From Someone Tue Jan 1', 'Subject: =?utf-8?Q?caf=C3=A9?= =?iso-8859-1?B?6Q==?='),
    hostileString(40).map((s) => `Subject: ${s.replace(/[\r\n]/g, ' ')}`),
    hostileString(40).map((s) => `To: ${s.replace(/[\r\n]/g, ' ')}`),
  ),
  { maxLength: 4 },
);

/** A rendered message: top-level header lines, the tree, line ends CRLF, LF or mixed. */
const mimeMessage = fc.tuple(topHeaders, node, fc.constantFrom('\r\n', '\n', 'mixed'), fc.boolean()).map(([top, tree, eol, finalEol]) => {
  const lines = [...top, ...render(tree)];
  let s = '';
  for (const [i, l] of lines.entries()) s += l + (eol === 'mixed' ? (i % 3 === 1 ? '\n' : '\r\n') : eol);
  if (!finalEol) s = s.replace(/\r?\n$/, '');
  return Buffer.from(s, 'latin1');
});

const options: fc.Arbitrary<AnalyserOptions> = fc.oneof(
  { weight: 2, arbitrary: fc.constant({}) },
  {
    weight: 1,
    arbitrary: fc.record(
      {
        maxParts: fc.integer({ min: 1, max: 12 }),
        maxDepth: fc.integer({ min: 1, max: 6 }),
        maxHeaderBytes: fc.integer({ min: 0, max: 3000 }),
        maxLineBytes: fc.integer({ min: 0, max: 2000 }),
        maxAttachments: fc.integer({ min: 0, max: 5 }),
        maxTnefAttributeBytes: fc.integer({ min: 0, max: 2000 }),
      },
      { requiredKeys: [] },
    ),
  },
);

// ---- checks --------------------------------------------------------------------------------

interface Internals {
  stack: unknown[];
  active: Map<string, number>;
}

/** Analyses `buf` cut at `cuts`, checking the bounded state after every chunk. */
function analyse(buf: Buffer, cuts: number[], opts: AnalyserOptions): AnalysisResult {
  const a = new MessageAnalyser(opts);
  const inner = a as unknown as Internals;
  const maxDepth = opts.maxDepth ?? 50;
  const bounds = [0, ...cuts, buf.length];
  for (let i = 0; i < bounds.length - 1; i++) {
    const piece = Buffer.from(buf.subarray(bounds[i], bounds[i + 1]));
    a.write(piece);
    piece.fill(0x2d); // "-": a kept view into the chunk would turn into boundary-like junk
    assert.ok(inner.stack.length <= Math.max(1, maxDepth) + 2, `stack of ${inner.stack.length} entities`);
    assert.ok(inner.active.size <= inner.stack.length, 'active boundaries');
  }
  return a.end();
}

function checkResult(r: AnalysisResult, size: number, opts: AnalyserOptions): void {
  assert.equal(r.size, size);
  const rows = r.structure;
  assert.ok(rows.length >= 1, 'at least the top-level row');
  assert.ok(rows.length <= Math.max(1, opts.maxParts ?? 1000), `${rows.length} rows`);
  assert.ok(r.attachments.length <= Math.max(0, opts.maxAttachments ?? 1000), `${r.attachments.length} attachments`);
  for (const [i, p] of rows.entries()) {
    assert.ok(Number.isInteger(p.Start) && Number.isInteger(p.End), 'integer offsets');
    assert.ok(p.Start >= 0 && p.Start <= p.End && p.End <= size, `row ${p.Path}: ${p.Start}..${p.End} of ${size}`);
    assert.match(p.Path, /^(TEXT|\d+(\.\d+)*(\.TEXT)?)$/, 'path syntax');
    if (i > 0) assert.ok(p.Start >= rows[i - 1].Start, `row ${p.Path} before the row ahead of it`);
    assert.equal(p.ContentType, p.ContentType.toLowerCase());
    for (const q of rows.slice(0, i)) {
      const disjoint = p.End <= q.Start || q.End <= p.Start;
      const nested = (q.Start <= p.Start && p.End <= q.End) || (p.Start <= q.Start && q.End <= p.End);
      assert.ok(disjoint || nested, `rows ${q.Path} ${q.Start}..${q.End} and ${p.Path} ${p.Start}..${p.End} overlap`);
    }
  }
  assert.equal(new Set(rows.map((p) => p.Path)).size, rows.length, 'paths are unique');
  for (const a of r.attachments) {
    assert.ok(Number.isInteger(a.MIMESection) && a.MIMESection >= 1 && a.MIMESection <= rows.length, `section ${a.MIMESection}`);
    assert.ok(Number.isInteger(a.Size) && a.Size >= 0, `size ${a.Size}`);
    assert.ok(['MIME', 'UUE', 'BINHEX', 'MIMEUUE', 'MIMEBINHEX', 'TNEF'].includes(a.Type));
  }
  const maxHeader = Math.max(1024, opts.maxHeaderBytes ?? 1024 * 1024);
  const headerChars = r.headers.reduce((n, h) => n + h.name.length + h.value.length, 0);
  assert.ok(headerChars <= maxHeader, `${headerChars} header characters kept`);
  assert.equal(new Set(r.defects).size, r.defects.length, 'defects listed once');
}

function property(buf: Buffer, raw: number[], opts: AnalyserOptions): void {
  const whole = analyse(buf, [], opts);
  checkResult(whole, buf.length, opts);
  const cuts = cutsFor(buf.length, raw);
  const chunked = analyse(buf, cuts, opts);
  assert.deepEqual(chunked, whole, 'the same result whatever the chunking');
  // The runs of body lines and the base64 kernel change nothing.
  assert.deepEqual(analyse(buf, cuts, { ...opts, lineByLine: true }), whole, 'the same result line by line');
}

const cutList = fc.array(fc.nat(), { maxLength: 10 });

test('fuzz MessageAnalyser: generated MIME messages', () => {
  fc.assert(fc.property(mimeMessage, cutList, options, property), params(3_000));
});

test('fuzz MessageAnalyser: mutated MIME messages', () => {
  fc.assert(fc.property(mutateBytes(mimeMessage, 8), cutList, options, property), params(3_000));
});

test('fuzz MessageAnalyser: byte soups', () => {
  const soup = fc.oneof(
    byteSoup(600),
    fc.uint8Array({ maxLength: 400 }).map((u) => Buffer.from(u)),
    fc
      .array(fc.constantFrom('Content-Type: multipart/mixed; boundary=b\r\n', '\r\n', '--b\r\n', '--b--\r\n', 'Content-Type: message/rfc822\r\n', 'x\r\n', '\n', 'begin 644 f\r\n', 'M86)C\r\n', '`\r\nend\r\n'), { maxLength: 60 })
      .map((a) => Buffer.from(a.join(''))),
  );
  fc.assert(fc.property(soup, cutList, options, property), params(5_000));
});

/** A chain of `depth` multiparts and message/rfc822 parts, each holding the next. */
function nested(kinds: boolean[], sameBoundary: boolean, closed: boolean): Buffer {
  const open: string[] = [];
  const close: string[] = [];
  for (const [i, multipart] of kinds.entries()) {
    if (multipart) {
      const b = sameBoundary ? 'b' : `b${i}`;
      open.push(`Content-Type: multipart/mixed; boundary="${b}"\r\n\r\n--${b}\r\n`);
      close.unshift(closed ? `\r\n--${b}--\r\n` : '');
    } else open.push('Content-Type: message/rfc822\r\n\r\n');
  }
  return Buffer.from(`${open.join('')}Content-Type: text/plain; name=deep.txt\r\n\r\ndeep\r\n${close.join('')}`);
}

test('fuzz MessageAnalyser: deep nesting stays within maxDepth', () => {
  fc.assert(
    fc.property(
      fc.array(fc.boolean(), { minLength: 1, maxLength: 400 }),
      fc.boolean(),
      fc.boolean(),
      fc.option(fc.integer({ min: 1, max: 80 }), { nil: undefined }),
      cutList,
      (kinds, same, closed, maxDepth, raw) => {
        const buf = nested(kinds, same, closed);
        const opts = { maxDepth };
        property(buf, raw, opts);
        const r = analyse(buf, [], opts);
        if (kinds.length > (maxDepth ?? 50)) assert.ok(r.truncated && r.defects.includes('too-deep'), 'too deep is reported');
      },
    ),
    params(400),
  );
});

// ---- memory --------------------------------------------------------------------------------

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function retained(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/** Pathological streams of `total` bytes, each produced by repeating one pattern. */
const PATHOLOGICAL: Record<string, { head: string; unit: (i: number) => string }> = {
  'one endless line': { head: '', unit: () => 'x'.repeat(1000) },
  'one endless header field': { head: 'Subject: ', unit: () => 'y'.repeat(999) + '\t' },
  'endless folded header': { head: 'X: a\r\n', unit: () => ' ' + 'z'.repeat(997) + '\r\n' },
  'endless nesting': { head: '', unit: (i) => `Content-Type: multipart/mixed; boundary="b${i}"\r\n\r\n--b${i}\r\n` },
  'endless parts with names': { head: 'Content-Type: multipart/mixed; boundary=b\r\n\r\n', unit: (i) => `--b\r\nContent-Type: text/plain; name="f${i}.txt"\r\n\r\nx\r\n` },
  'endless identical nesting': { head: '', unit: () => 'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n' },
  'endless rfc822 nesting': { head: '', unit: () => 'Content-Type: message/rfc822\r\n\r\n' },
  'endless uuencode': { head: 'Subject: u\r\n\r\nbegin 644 big.bin\r\n', unit: () => `M${'A'.repeat(60)}\r\n` },
  'endless CR soup': { head: 'Subject: c\r\n\r\n', unit: () => '\r'.repeat(999) + '\n' },
  'endless boundary-like lines': { head: 'Content-Type: multipart/mixed; boundary=b\r\n\r\n', unit: (i) => `--b${'x'.repeat(i % 200)}\r\n--\r\n` },
};

test('MessageAnalyser: retained memory stays bounded on pathological streams', () => {
  // Limits well under the input size, so that keeping the input would show.
  const opts: AnalyserOptions = { maxHeaderBytes: 64 * 1024, maxParts: 200, maxAttachments: 200, maxLineBytes: 8 * 1024 };
  const total = Math.round(4 * 1024 * 1024 * Math.min(4, runs(1)));
  const report: string[] = [];
  for (const [name, { head, unit }] of Object.entries(PATHOLOGICAL)) {
    const before = retained();
    const a = new MessageAnalyser(opts);
    a.write(Buffer.from(head));
    let written = 0;
    let peak = 0;
    let n = 0;
    for (let i = 0; written < total; i++) {
      const chunk = [];
      for (let k = 0; k < 256 && written + chunk.length * 64 < total; k++) chunk.push(unit(n++));
      const b = Buffer.from(chunk.join(''));
      a.write(b);
      written += b.length;
      if (i % 64 === 0) peak = Math.max(peak, retained() - before);
    }
    peak = Math.max(peak, retained() - before);
    const r = a.end();
    assert.equal(r.size, written + head.length);
    report.push(`${name}: ${(peak / 1048576).toFixed(2)} MiB`);
    assert.ok(peak < 2 * 1024 * 1024, `${name}: ${(peak / 1048576).toFixed(2)} MiB retained after ${(written / 1048576).toFixed(0)} MiB`);
  }
  if (process.env.FUZZ_VERBOSE) console.log(report.join('\n'));
});
