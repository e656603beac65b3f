/**
 * Fuzzing of the DATA / BDAT reader (src/smtp/data-reader.ts) against a line-at-a-time
 * reference model, with random byte soups cut into random chunks (fresh copies scribbled over
 * after each push, or windows of one buffer). Invariants: never throws; the stored bytes,
 * size, line counts and flags equal the model's; every stored LF follows a CR; DATA ends
 * exactly after the first <CRLF>.<CRLF> (no message can be smuggled behind a bare-LF or
 * bare-CR "terminator"). The stored form cut back into lines for the per-line script hooks
 * (src/smtp/line-batcher.ts) gives the stored lines.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DataReader } from '../../src/smtp/data-reader.js';
import { LineBatcher, splitLines } from '../../src/smtp/line-batcher.js';
import { byteSoup, cutsFor, params } from './fuzz-common.js';

const CR = 13;
const LF = 10;
const DOT = 46;

interface Model {
  out: Buffer;
  /** Offset just past the terminating line, -1 when none. */
  end: number;
  size: number;
  maxLineSeen: number;
  linesDone: number;
  dottedLines: number[];
}

/**
 * The rules, one line at a time: a line ends at LF and is stored with CRLF; its length is its
 * octets before the LF less a CR right before it; in dot mode a leading "." is removed and a
 * line "." ended by CRLF after a CRLF-ended line (or first) ends the data. At the end a
 * partial line is stored as it is (dot mode) or completed with CRLF (BDAT, `finish`).
 */
function model(input: Buffer, dot: boolean): Model {
  const out: Buffer[] = [];
  const m: Model = { out: Buffer.alloc(0), end: -1, size: 0, maxLineSeen: 0, linesDone: 0, dottedLines: [] };
  let pos = 0;
  let prevCRLF = true;
  while (pos < input.length) {
    const lf = input.indexOf(LF, pos);
    let line = input.subarray(pos, lf < 0 ? input.length : lf);
    const crlf = line.length > 0 && line[line.length - 1] === CR;
    if (lf < 0 && dot) {
      // Unfinished line in dot mode: stored as far as it came (the session drops it anyway).
      out.push(line[0] === DOT ? line.subarray(1) : line);
      break;
    }
    if (dot && crlf && prevCRLF && line.length === 2 && line[0] === DOT) {
      m.end = lf + 1;
      break;
    }
    const len = line.length - (crlf ? 1 : 0);
    m.maxLineSeen = Math.max(m.maxLineSeen, len);
    if (dot && line[0] === DOT) {
      m.dottedLines.push(m.linesDone);
      line = line.subarray(1);
    }
    m.linesDone++;
    out.push(line.subarray(0, crlf ? line.length - 1 : line.length), Buffer.from('\r\n'));
    prevCRLF = crlf;
    if (lf < 0) break;
    pos = lf + 1;
  }
  m.out = Buffer.concat(out);
  m.size = m.out.length;
  return m;
}

/** Where DATA must end, found by plain search: after the first CRLF "." CRLF (or a first ".\r\n"). */
function terminatorEnd(input: Buffer): number {
  if (input.subarray(0, 3).equals(Buffer.from('.\r\n'))) return 3;
  const i = input.indexOf('\r\n.\r\n');
  return i < 0 ? -1 : i + 5;
}

interface Fed {
  out: Buffer;
  end: number;
  reader: DataReader;
}

function feed(input: Buffer, cuts: number[], dot: boolean, maxSize: number, maxLine: number, windows: boolean): Fed {
  const stored: Buffer[] = [];
  let lfs = 0;
  const reader: DataReader = new DataReader(
    {
      write(bufs) {
        assert.ok(bufs.length > 0, 'the sink is never called with nothing');
        // Copied at once: the reader may hand out views into the caller's chunk.
        const piece = Buffer.concat(bufs);
        stored.push(piece);
        // The line hooks take the count of lines in what was handed on from linesDone.
        for (let i = piece.indexOf(LF); i >= 0; i = piece.indexOf(LF, i + 1)) lfs++;
        if (!reader.tooBig) assert.equal(reader.linesDone, lfs, 'linesDone counts the LFs handed on');
      },
    },
    dot,
    maxSize,
    maxLine,
  );
  const bounds = [0, ...cuts, input.length];
  let end = -1;
  for (let i = 0; i < bounds.length - 1 && end < 0; i++) {
    const from = bounds[i];
    const to = bounds[i + 1];
    if (windows) {
      const r = reader.push(input, from, to);
      if (r >= 0) {
        assert.ok(r > from && r <= to, `end ${r} outside the window ${from}..${to}`);
        end = r;
      }
    } else {
      const piece = Buffer.from(input.subarray(from, to));
      const r = reader.push(piece);
      piece.fill(0x58); // a reader that kept a view into an old chunk would store X's
      if (r >= 0) {
        assert.ok(r > 0 && r <= piece.length, `end ${r} outside the chunk of ${piece.length}`);
        end = from + r;
      }
    }
  }
  reader.finish();
  return { out: Buffer.concat(stored), end, reader };
}

function checkAgainstModel(input: Buffer, f: Fed, dot: boolean, maxSize: number, maxLine: number): void {
  const consumed = f.end < 0 ? input : input.subarray(0, f.end);
  const m = model(consumed, dot);
  if (dot) {
    assert.equal(f.end, terminatorEnd(input), 'DATA ends exactly after the first CRLF.CRLF');
    assert.equal(f.end, model(input, true).end, 'the end agrees with the line model');
  }
  const r = f.reader;
  assert.equal(r.size, m.size, 'size');
  assert.equal(r.tooBig, maxSize > 0 && m.size > maxSize, 'tooBig');
  if (r.tooBig) assert.ok(m.out.subarray(0, f.out.length).equals(f.out), 'what was stored before the limit is the start of the message');
  else assert.ok(f.out.equals(m.out), `stored ${JSON.stringify(f.out.toString('latin1'))}, model ${JSON.stringify(m.out.toString('latin1'))}`);
  assert.equal(r.maxLineSeen, m.maxLineSeen, 'maxLineSeen');
  assert.equal(r.longLine, m.maxLineSeen > maxLine, 'longLine');
  assert.equal(r.linesDone, m.linesDone, 'linesDone');
  assert.deepEqual(
    r.dottedLines.filter((i) => i < r.linesDone),
    m.dottedLines,
    'dottedLines',
  );
  // Stored form: every LF is part of a CRLF; with `finish` in BDAT mode it ends with CRLF.
  const complete = dot ? f.out.subarray(0, f.out.lastIndexOf(LF) + 1) : f.out;
  for (let i = complete.indexOf(LF); i >= 0; i = complete.indexOf(LF, i + 1)) assert.equal(complete[i - 1], CR, `bare LF stored at ${i}`);
  if (!dot && !r.tooBig && f.out.length) assert.equal(f.out.subarray(-2).toString('latin1'), '\r\n', 'BDAT data ends with CRLF');
}

const soup = fc.oneof(
  { weight: 4, arbitrary: byteSoup(300) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }).map((u) => Buffer.from(u)) },
  {
    weight: 1,
    arbitrary: fc
      .array(fc.constantFrom('\r', '\n', '.', 'a', '\r\n'), { maxLength: 40 })
      .map((a) => Buffer.from(a.join(''), 'latin1')),
  },
);

const cutList = fc.array(fc.nat(), { maxLength: 12 });
const limits = fc.tuple(fc.oneof(fc.constant(0), fc.nat({ max: 400 })), fc.nat({ max: 80 }));

test('fuzz DataReader (DATA): matches the reference model under any chunking', () => {
  fc.assert(
    fc.property(soup, cutList, fc.boolean(), limits, (input, raw, windows, [maxSize, maxLine]) => {
      const f = feed(input, cutsFor(input.length, raw), true, maxSize, maxLine, windows);
      checkAgainstModel(input, f, true, maxSize, maxLine);
    }),
    params(40_000, [
      [Buffer.from('.\r\r\n.\r\n'), [1, 2], false, [0, 10]],
      [Buffer.from('a\n.\r\n.\r\n'), [3], true, [0, 10]],
      [Buffer.from('.\r'), [1], false, [0, 0]],
    ]),
  );
});

test('fuzz DataReader (BDAT): matches the reference model under any chunking, finished by LAST', () => {
  fc.assert(
    fc.property(soup, cutList, fc.boolean(), limits, (input, raw, windows, [maxSize, maxLine]) => {
      const f = feed(input, cutsFor(input.length, raw), false, maxSize, maxLine, windows);
      assert.equal(f.end, -1, 'BDAT data never ends by itself');
      checkAgainstModel(input, f, false, maxSize, maxLine);
    }),
    params(25_000),
  );
});

/** Fake terminators seen in SMTP smuggling (bare LF / bare CR around the dot, NUL...). */
const FAKE_ENDS = ['\n.\n', '\n.\r\n', '\r\n.\n', '\r.\r\n', '\r.\r', '\r\n.\r', '\n.\r', '.\n', '\r\n\0.\r\n', '\r\n.\0\r\n', '\n\n.\n\n', '\r\r\n.\r\r\n', '\r\n .\r\n'];

test('fuzz DataReader: a second message behind a fake terminator is never split off', () => {
  const noLF = byteSoup(80).map((b) => Buffer.from(b.toString('latin1').replace(/[\r\n]/g, ''), 'latin1'));
  fc.assert(
    fc.property(noLF, fc.constantFrom(...FAKE_ENDS), noLF, cutList, fc.boolean(), (a, fake, b, raw, windows) => {
      const smuggled = `${fake}MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n`;
      const input = Buffer.concat([Buffer.from('x'), a, Buffer.from(smuggled, 'latin1'), Buffer.from('y'), b, Buffer.from('\r\n.\r\n')]);
      const f = feed(input, cutsFor(input.length, raw), true, 0, 1000, windows);
      assert.equal(f.end, input.length, `DATA ended at ${f.end} of ${input.length}`);
      assert.ok(f.out.includes('MAIL FROM:<evil@example.com>\r\n'), 'the smuggled text is part of the first message');
    }),
    params(20_000),
  );
});

test('fuzz LineBatcher: the stored form cut into blocks of lines for the line hooks, in any chunking', () => {
  fc.assert(
    fc.property(soup, cutList, cutList, fc.integer({ min: 1, max: 60 }), (input, raw1, raw2, maxLine) => {
      const stored = model(input, true).out;
      const whole = stored.subarray(0, stored.lastIndexOf(LF) + 1);
      const got: Buffer[] = [];
      const batcher = new LineBatcher(maxLine);
      // As the reader hands them on: arrays of pieces, cut anywhere.
      const bounds = [0, ...cutsFor(whole.length, raw1), whole.length];
      const inner = new Set(cutsFor(whole.length, raw2));
      for (let i = 0; i < bounds.length - 1; i++) {
        const from = bounds[i];
        const to = bounds[i + 1];
        const pieces: Buffer[] = [];
        let at = from;
        for (const c of [...inner].filter((x) => x > from && x < to).sort((a, b) => a - b)) {
          pieces.push(Buffer.from(whole.subarray(at, c)));
          at = c;
        }
        pieces.push(Buffer.from(whole.subarray(at, to)));
        // (Not scribbled over afterwards: the batcher keeps views of a line's earlier pieces
        // until the line ends, as socket chunks are never reused.)
        const block = batcher.take(pieces);
        if (block) for (const line of splitLines(block)) got.push(Buffer.from(line));
      }
      const want = whole.length ? whole.subarray(0, -1).toString('latin1').split('\n') : [];
      assert.equal(got.length, want.length, 'one call per stored line');
      for (const [i, w] of want.entries()) {
        const line = Buffer.from(w.endsWith('\r') ? w.slice(0, -1) : w, 'latin1');
        if (line.length <= maxLine) assert.ok(got[i].equals(line), `line ${i}: ${JSON.stringify(got[i].toString('latin1'))} vs ${JSON.stringify(w)}`);
        // A long line is whole when it came in one write, else cut to its first maxLine + 2 bytes.
        else assert.ok((got[i].equals(line) || got[i].length <= maxLine + 2) && line.subarray(0, got[i].length).equals(got[i]), `long line ${i} cut short`);
      }
    }),
    params(15_000),
  );
});
