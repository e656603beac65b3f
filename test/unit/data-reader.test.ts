import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DataReader } from '../../src/smtp/data-reader.js';
import { prng } from '../helpers/test-util.js';

interface Run {
  out: Buffer;
  /** Offset in the whole input just past the end of DATA, or -1. */
  end: number;
  reader: DataReader;
  writes: number;
}

interface Opts {
  dot?: boolean;
  maxSize?: number;
  maxLine?: number;
  finish?: boolean;
}

/**
 * Feeds `input` split at `cuts` (sorted offsets). With `windows`, the whole buffer is passed each
 * time with start/end; otherwise each piece is a fresh copy that is scribbled over after `push`
 * returns, so a reader keeping references into old chunks would be caught.
 */
function run(input: Buffer | string, cuts: number[] = [], opts: Opts = {}, windows = false): Run {
  const buf = typeof input === 'string' ? Buffer.from(input, 'latin1') : input;
  const parts: Buffer[] = [];
  let writes = 0;
  const reader = new DataReader(
    {
      write(bufs) {
        writes++;
        assert.ok(bufs.length > 0, 'sink is never called with nothing');
        parts.push(Buffer.concat(bufs));
      },
    },
    opts.dot ?? true,
    opts.maxSize ?? 0,
    opts.maxLine ?? 1000,
  );
  const bounds = [0, ...cuts, buf.length];
  let end = -1;
  for (let i = 0; i < bounds.length - 1; i++) {
    const from = bounds[i];
    const to = bounds[i + 1];
    let r: number;
    if (windows) {
      r = reader.push(buf, from, to);
      if (r >= 0) {
        assert.ok(r > from && r <= to, `end offset ${r} inside the window ${from}..${to}`);
        end = r;
        break;
      }
    } else {
      const piece = Buffer.from(buf.subarray(from, to));
      r = reader.push(piece);
      piece.fill(0x58);
      if (r >= 0) {
        assert.ok(r > 0 && r <= piece.length);
        end = from + r;
        break;
      }
    }
  }
  if (opts.finish ?? true) reader.finish();
  return { out: Buffer.concat(parts), end, reader, writes };
}

/**
 * A plain line-at-a-time model of the rules: a line ends at LF; it is stored with CRLF; in dot
 * mode a leading "." is removed, and a "." line ended by CRLF right after a CRLF-ended line
 * (or at the start) ends the data. Line length counts the octets before the line ending.
 */
function model(input: Buffer, dot = true): { out: Buffer; end: number; maxLineSeen: number; size: number } {
  const out: Buffer[] = [];
  let pos = 0;
  let prevCRLF = true;
  let maxLineSeen = 0;
  let size = 0;
  const emit = (b: Buffer): void => {
    out.push(b);
    size += b.length;
  };
  while (pos < input.length) {
    const lf = input.indexOf(10, pos);
    if (lf < 0) {
      let rest = input.subarray(pos);
      if (dot && rest[0] === 46) rest = rest.subarray(1);
      emit(rest);
      break;
    }
    const crlf = lf > pos && input[lf - 1] === 13;
    const line = input.subarray(pos, crlf ? lf - 1 : lf);
    if (dot && crlf && prevCRLF && line.length === 1 && line[0] === 46) {
      return { out: Buffer.concat(out), end: lf + 1, maxLineSeen, size };
    }
    maxLineSeen = Math.max(maxLineSeen, line.length);
    emit(dot && line[0] === 46 ? line.subarray(1) : line);
    emit(Buffer.from('\r\n'));
    prevCRLF = crlf;
    pos = lf + 1;
  }
  return { out: Buffer.concat(out), end: -1, maxLineSeen, size };
}

function randomCuts(len: number, rnd: () => number): number[] {
  const cuts: number[] = [];
  let p = 0;
  for (;;) {
    p += 1 + Math.floor(rnd() * 7);
    if (p >= len) return cuts;
    cuts.push(p);
  }
}

const latin1 = (b: Buffer): string => b.toString('latin1');

// ---- ordinary DATA ---------------------------------------------------------------------

test('CRLF.CRLF ends the data; the bytes after it are neither consumed nor stored', () => {
  const input = 'Subject: hi\r\n\r\nHello.\r\n.\r\nQUIT\r\n';
  const r = run(input);
  assert.equal(latin1(r.out), 'Subject: hi\r\n\r\nHello.\r\n');
  assert.equal(r.end, input.indexOf('QUIT'));
  assert.equal(r.reader.size, r.out.length);
  assert.equal(r.reader.tooBig, false);
  assert.equal(r.reader.longLine, false);
});

test('the returned offset is relative to the chunk, honouring start and end', () => {
  const buf = Buffer.from('XXXXa\r\n.\r\nYYYY');
  const out: Buffer[] = [];
  const reader = new DataReader({ write: (b) => out.push(Buffer.concat(b)) }, true, 0, 1000);
  assert.equal(reader.push(buf, 4, 6), -1);
  assert.equal(reader.push(buf, 6, buf.length), 10);
  assert.equal(latin1(Buffer.concat(out)), 'a\r\n');
});

test('data that does not end returns -1 and streams what it has', () => {
  const r = run('line one\r\nline two\r\npartial', [], { finish: false });
  assert.equal(r.end, -1);
  assert.equal(latin1(r.out), 'line one\r\nline two\r\npartial');
});

test('an empty message: "." on the very first line', () => {
  const r = run('.\r\nNEXT');
  assert.equal(r.end, 3);
  assert.equal(r.out.length, 0);
  assert.equal(r.writes, 0);
  assert.equal(r.reader.size, 0);
});

test('an empty message split byte by byte', () => {
  const r = run('.\r\nNEXT', [1, 2]);
  assert.equal(r.end, 3);
  assert.equal(r.out.length, 0);
});

test('a message of one empty line', () => {
  const r = run('\r\n.\r\n');
  assert.equal(latin1(r.out), '\r\n');
  assert.equal(r.end, 5);
});

test('dot-unstuffing removes exactly one leading dot of every line', () => {
  const input = '..\r\n...\r\n.x\r\nx.\r\n. \r\n..a.b\r\na\r\n.\r\n';
  const r = run(input);
  assert.equal(latin1(r.out), '.\r\n..\r\nx\r\nx.\r\n \r\n.a.b\r\na\r\n');
  assert.equal(r.end, input.length);
});

test('a dot in the middle of a line or after a bare CR is not unstuffed', () => {
  const r = run('a.b\r\nc\r.d\r\n.\r\n');
  assert.equal(latin1(r.out), 'a.b\r\nc\r.d\r\n');
});

test('"..\\r\\n" before the end is a "." line, not the end', () => {
  const input = 'a\r\n..\r\nb\r\n.\r\n';
  const r = run(input);
  assert.equal(latin1(r.out), 'a\r\n.\r\nb\r\n');
  assert.equal(r.end, input.length);
});

test('8-bit and control bytes pass through exactly', () => {
  const all: number[] = [];
  for (let b = 0; b < 256; b++) if (b !== 10 && b !== 13) all.push(b);
  const body = Buffer.from(all);
  const utf8 = Buffer.from('Grüße, 日本語, 🎉\r\n');
  const invalid = Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xe2, 0x82, 0x0d, 0x0a]);
  const input = Buffer.concat([body, Buffer.from('\r\n'), utf8, invalid, Buffer.from('.\r\n')]);
  const expected = Buffer.concat([body, Buffer.from('\r\n'), utf8, invalid]);
  for (const cuts of [[], [1], [100, 200, 255], [body.length + 1]]) {
    const r = run(input, cuts);
    assert.ok(r.out.equals(expected), `cuts ${cuts.join(',')}`);
    assert.equal(r.end, input.length);
  }
});

test('a line starting with "." followed by 8-bit bytes is unstuffed and kept', () => {
  const input = Buffer.concat([Buffer.from('.'), Buffer.from([0xe9, 0x80, 0x00, 0x2e]), Buffer.from('\r\n.\r\n')]);
  const r = run(input, [1]);
  assert.ok(r.out.equals(Buffer.from([0xe9, 0x80, 0x00, 0x2e, 0x0d, 0x0a])));
});

// ---- chunk boundaries ------------------------------------------------------------------

const tricky =
  'From: a@b\r\nSubject: x\r\n\r\n..stuffed\r\n.\r\r\nbare\nlf\n.\n' +
  '\r\n.\rcr\r\n\r\n..\r\n.x\r\n' +
  Buffer.from([0xc3, 0xa9, 0x00, 0xff]).toString('latin1') +
  '\r\nlast\r\n.\r\nAFTER\r\n.\r\n';

test('the reference input gives the expected bytes in one chunk', () => {
  const r = run(tricky);
  const expected =
    'From: a@b\r\nSubject: x\r\n\r\n.stuffed\r\n\r\r\nbare\r\nlf\r\n\r\n' +
    '\r\n\rcr\r\n\r\n.\r\nx\r\n' +
    Buffer.from([0xc3, 0xa9, 0x00, 0xff]).toString('latin1') +
    '\r\nlast\r\n';
  assert.equal(latin1(r.out), expected);
  assert.equal(r.end, tricky.indexOf('AFTER'));
  const m = model(Buffer.from(tricky, 'latin1'));
  assert.ok(m.out.equals(r.out));
  assert.equal(m.end, r.end);
});

test('split once at every offset: same bytes and end offset as one chunk', () => {
  const whole = run(tricky);
  for (let k = 0; k <= tricky.length; k++) {
    for (const windows of [false, true]) {
      const r = run(tricky, [k], {}, windows);
      assert.ok(r.out.equals(whole.out), `split at ${k} (windows=${windows})`);
      assert.equal(r.end, whole.end, `end with split at ${k}`);
      assert.equal(r.reader.size, whole.reader.size);
      assert.equal(r.reader.maxLineSeen, whole.reader.maxLineSeen);
    }
  }
});

test('the end marker split at every pair of offsets around it', () => {
  const input = 'body line\r\nsecond\r\n.\r\nNEXT COMMAND\r\n';
  const endAt = input.indexOf('NEXT');
  for (let i = 0; i <= input.length; i++) {
    for (let j = i; j <= input.length; j++) {
      const r = run(input, [i, j].filter((x, n, a) => a.indexOf(x) === n));
      assert.equal(latin1(r.out), 'body line\r\nsecond\r\n', `cuts ${i},${j}`);
      assert.equal(r.end, endAt, `cuts ${i},${j}`);
    }
  }
});

test('one byte at a time', () => {
  const cuts = Array.from({ length: tricky.length - 1 }, (_, i) => i + 1);
  const whole = run(tricky);
  for (const windows of [false, true]) {
    const r = run(tricky, cuts, {}, windows);
    assert.ok(r.out.equals(whole.out));
    assert.equal(r.end, whole.end);
  }
});

test('random chunkings of the reference input', () => {
  const whole = run(tricky);
  const rnd = prng(1);
  for (let n = 0; n < 500; n++) {
    const cuts = randomCuts(tricky.length, rnd);
    const r = run(tricky, cuts, {}, n % 2 === 0);
    assert.ok(r.out.equals(whole.out), `cuts ${cuts.join(',')}`);
    assert.equal(r.end, whole.end, `cuts ${cuts.join(',')}`);
  }
});

test('random inputs of CR, LF, "." and letters agree with the line model at random chunkings', () => {
  const rnd = prng(42);
  const alphabet = [13, 10, 46, 46, 97, 0xe9, 0];
  for (let n = 0; n < 3000; n++) {
    const len = 1 + Math.floor(rnd() * 24);
    const bytes: number[] = [];
    for (let i = 0; i < len; i++) bytes.push(alphabet[Math.floor(rnd() * alphabet.length)]);
    const input = Buffer.concat([Buffer.from(bytes), Buffer.from('\r\n.\r\nTAIL')]);
    const m = model(input);
    const label = JSON.stringify(latin1(input));
    for (const cuts of [[], randomCuts(input.length, rnd), randomCuts(input.length, rnd)]) {
      const r = run(input, cuts, { maxLine: 5 });
      assert.ok(r.out.equals(m.out), `${label} cuts ${cuts.join(',')}: ${JSON.stringify(latin1(r.out))}`);
      assert.equal(r.end, m.end, `${label} cuts ${cuts.join(',')}`);
      assert.equal(r.reader.size, m.size, label);
      assert.equal(r.reader.maxLineSeen, m.maxLineSeen, `${label} maxLineSeen`);
      assert.equal(r.reader.longLine, m.maxLineSeen > 5, `${label} longLine`);
    }
  }
});

// ---- bare LF and bare CR ----------------------------------------------------------------

test('bare LF lines are stored with CRLF', () => {
  const input = 'a\nb\r\nc\n\nd\r\n.\r\n';
  const r = run(input);
  assert.equal(latin1(r.out), 'a\r\nb\r\nc\r\n\r\nd\r\n');
  assert.equal(r.end, input.length);
});

test('a CRLF split across chunks is not taken for a bare LF', () => {
  const r = run('abc\r\ndef\r\n.\r\n', [4, 9]);
  assert.equal(latin1(r.out), 'abc\r\ndef\r\n');
});

test('bare CR is data, not a line ending', () => {
  const input = 'a\rb\r\r\n\r\rc\r\n.\r\n';
  const r = run(input);
  assert.equal(latin1(r.out), 'a\rb\r\r\n\r\rc\r\n');
  assert.equal(r.end, input.length);
  assert.equal(r.reader.maxLineSeen, 4);
});

test('a CR held after a lone dot is given back as data when no LF follows', () => {
  // ".\r" then "x": the line ".\rx" unstuffs to "\rx".
  for (const cuts of [[], [3], [4], [3, 4], [4, 5]]) {
    const r = run('a\r\n.\rx\r\n.\r\n', cuts);
    assert.equal(latin1(r.out), 'a\r\n\rx\r\n', `cuts ${cuts.join(',')}`);
  }
  // ".\r\r\n": a line holding one CR.
  const r2 = run('a\r\n.\r\r\n.\r\n', [5]);
  assert.equal(latin1(r2.out), 'a\r\n\r\r\n');
});

// ---- SMTP smuggling ---------------------------------------------------------------------

const smuggled = 'MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n';

for (const [name, marker, stored] of [
  ['\\n.\\n', '\n.\n', '\r\n\r\n'],
  ['\\n.\\r\\n', '\n.\r\n', '\r\n\r\n'],
  ['\\r\\n.\\n', '\r\n.\n', '\r\n\r\n'],
  ['\\r.\\r', '\r.\r', '\r.\r'],
  ['\\r.\\r\\n', '\r.\r\n', '\r.\r\n'],
  ['\\r\\n.\\r', '\r\n.\r', '\r\n\r'],
  ['\\r\\n\\x00.\\r\\n', '\r\n\x00.\r\n', '\r\n\x00.\r\n'],
  ['.\\r\\n after an empty bare-LF line', '\r\n\n.\r\n', '\r\n\r\n\r\n'],
  ['\\n.\\n.\\r\\n', '\n.\n.\r\n', '\r\n\r\n\r\n'],
] as const) {
  test(`smuggling: "${name}" does not end the data`, () => {
    const input = `Subject: test\r\n\r\nfirst${marker}${smuggled}body\r\n.\r\nQUIT\r\n`;
    const expected = `Subject: test\r\n\r\nfirst${stored}${smuggled}body\r\n`;
    const realEnd = input.indexOf('QUIT');
    for (let k = 0; k <= input.length; k++) {
      const r = run(input, k === 0 ? [] : [k]);
      assert.equal(r.end, realEnd, `only the final CRLF.CRLF ends it (split at ${k})`);
      assert.equal(latin1(r.out), expected, `split at ${k}`);
    }
    const rnd = prng(marker.length * 7919);
    for (let n = 0; n < 50; n++) {
      const cuts = randomCuts(input.length, rnd);
      const r = run(input, cuts);
      assert.equal(r.end, realEnd, `cuts ${cuts.join(',')}`);
      assert.equal(latin1(r.out), expected);
    }
  });
}

test('smuggling: ".\\r\\n" right after a bare-LF line never ends, even at a chunk boundary', () => {
  const input = 'x\n.\r\nstill data\r\n.\r\n';
  for (const cuts of [[], [1], [2], [3], [4], [2, 3, 4]]) {
    const r = run(input, cuts);
    assert.equal(r.end, input.length, `cuts ${cuts.join(',')}`);
    assert.equal(latin1(r.out), 'x\r\n\r\nstill data\r\n');
  }
});

test('after a bare-LF line, a CRLF line restores normal end detection', () => {
  const input = 'a\nb\r\n.\r\nNEXT';
  const r = run(input);
  assert.equal(r.end, input.indexOf('NEXT'));
  assert.equal(latin1(r.out), 'a\r\nb\r\n');
});

test('the data never ends without a real CRLF.CRLF', () => {
  const r = run('a\n.\nb\r\n.\nc\n.\r\nd\r.\r\n', [], { finish: false });
  assert.equal(r.end, -1);
});

// ---- line length ------------------------------------------------------------------------

test('longLine and maxLineSeen: a line of exactly the limit is fine, one more octet is not', () => {
  const ok = run(`${'x'.repeat(80)}\r\nshort\r\n.\r\n`, [], { maxLine: 80 });
  assert.equal(ok.reader.longLine, false);
  assert.equal(ok.reader.maxLineSeen, 80);
  const long = run(`short\r\n${'x'.repeat(81)}\r\nshort\r\n.\r\n`, [3, 50, 85], { maxLine: 80 });
  assert.equal(long.reader.longLine, true);
  assert.equal(long.reader.maxLineSeen, 81);
  // The long line is still stored and the end still found.
  assert.equal(latin1(long.out), `short\r\n${'x'.repeat(81)}\r\nshort\r\n`);
});

test('line length counts a bare-LF line without its LF and a stuffed dot as an octet', () => {
  assert.equal(run(`${'y'.repeat(10)}\n.\r\n\r\n.\r\n`).reader.maxLineSeen, 10);
  assert.equal(run(`..${'y'.repeat(10)}\r\n.\r\n`).reader.maxLineSeen, 12);
  const r = run(`${'y'.repeat(10)}\r\n.\r\n`, [], { maxLine: 9 });
  assert.equal(r.reader.longLine, true);
});

test('a lone "." content line counts one octet whether it ends in LF or CRLF', () => {
  assert.equal(run('\n.\n\r\n.\r\n').reader.maxLineSeen, 1);
  assert.equal(run('\n.\r\n\r\n.\r\n').reader.maxLineSeen, 1);
  assert.equal(run('\n.\r\n\r\n.\r\n', [2, 3]).reader.maxLineSeen, 1);
});

test('a long line split across many chunks is measured whole', () => {
  const line = 'z'.repeat(5000);
  const input = `${line}\r\n.\r\n`;
  const r = run(input, [1000, 2000, 4999, 5000, 5001], { maxLine: 4999 });
  assert.equal(r.reader.maxLineSeen, 5000);
  assert.equal(r.reader.longLine, true);
});

// ---- size limit -------------------------------------------------------------------------

test('size counts stored octets (after unstuffing and CRLF normalization)', () => {
  const r = run('..a\nb\r\n.\r\n');
  assert.equal(latin1(r.out), '.a\r\nb\r\n');
  assert.equal(r.reader.size, 7);
});

test('a message of exactly maxSize is not too big', () => {
  const r = run('12345678\r\n.\r\n', [], { maxSize: 10 });
  assert.equal(r.reader.size, 10);
  assert.equal(r.reader.tooBig, false);
  assert.equal(latin1(r.out), '12345678\r\n');
});

test('beyond maxSize: tooBig, nothing more is emitted, size keeps counting, the end is still found', () => {
  const body = Array.from({ length: 200 }, (_, i) => `line ${i} ${'.'.repeat(i % 7)}\r\n`).join('');
  const input = `${body}.\r\nNEXT`;
  const full = run(input);
  for (const cuts of [[], [10, 33, 500], randomCuts(input.length, prng(9))]) {
    const r = run(input, cuts, { maxSize: 1000 });
    assert.equal(r.reader.tooBig, true);
    assert.equal(r.reader.size, full.reader.size);
    assert.ok(full.reader.size > 1000);
    assert.ok(r.out.length <= 1000, `emitted ${r.out.length} octets`);
    assert.ok(full.out.subarray(0, r.out.length).equals(r.out), 'what was emitted is a prefix of the message');
    assert.equal(r.end, input.indexOf('NEXT'));
  }
});

test('maxSize 0 means unlimited', () => {
  const r = run(`${'a'.repeat(100_000)}\r\n.\r\n`, [], { maxSize: 0, maxLine: 200_000 });
  assert.equal(r.reader.tooBig, false);
  assert.equal(r.out.length, 100_002);
});

test('the limit is also enforced on the CRLF added for a bare LF', () => {
  const r = run('123456789\n', [], { maxSize: 10, finish: false });
  assert.equal(r.reader.size, 11);
  assert.equal(r.reader.tooBig, true);
  assert.equal(latin1(r.out), '123456789');
});

// ---- BDAT ---------------------------------------------------------------------------------

test('BDAT: dots are data and CRLF.CRLF does not end anything', () => {
  const input = 'a\r\n.\r\n..b\r\n.\r\n';
  const r = run(input, [2, 5], { dot: false });
  assert.equal(r.end, -1);
  assert.equal(latin1(r.out), input);
  assert.equal(r.reader.size, input.length);
});

test('BDAT: "." at the very start is kept', () => {
  const r = run('.\r\n', [], { dot: false });
  assert.equal(r.end, -1);
  assert.equal(latin1(r.out), '.\r\n');
});

test('BDAT: chunking does not change the bytes', () => {
  const input = Buffer.from('x\r\n.\r\n.y\r\nz\r\r\nw\r\n', 'latin1');
  const whole = run(input, [], { dot: false });
  for (let k = 1; k < input.length; k++) {
    assert.ok(run(input, [k], { dot: false }).out.equals(whole.out), `split at ${k}`);
  }
});

test('BDAT: finish() with data ending in CRLF adds nothing', () => {
  const r = run('a\r\nb\r\n', [], { dot: false });
  assert.equal(latin1(r.out), 'a\r\nb\r\n');
  assert.equal(r.reader.size, 6);
});

test('BDAT: finish() with no data emits nothing', () => {
  const r = run('', [], { dot: false });
  assert.equal(r.out.length, 0);
  assert.equal(r.writes, 0);
  assert.equal(r.reader.size, 0);
});

test('BDAT: finish() completes a final line without CRLF', () => {
  const r = run('a\r\nlast', [5], { dot: false });
  assert.equal(latin1(r.out), 'a\r\nlast\r\n');
  assert.equal(r.reader.size, 9);
  // A final line that stopped after its CR only needs the LF.
  const cr = run('a\r\nlast\r', [], { dot: false });
  assert.equal(latin1(cr.out), 'a\r\nlast\r\n');
});

test('BDAT: an over-long final line without CRLF is still flagged', () => {
  const r = run(`ok\r\n${'x'.repeat(101)}`, [50], { dot: false, maxLine: 100 });
  assert.equal(r.reader.longLine, true);
  assert.equal(r.reader.maxLineSeen, 101);
  const fine = run(`ok\r\n${'x'.repeat(100)}`, [], { dot: false, maxLine: 100 });
  assert.equal(fine.reader.longLine, false);
});

test('DATA: finish() after the end adds nothing', () => {
  const r = run('a\r\n.\r\n');
  assert.equal(latin1(r.out), 'a\r\n');
});
