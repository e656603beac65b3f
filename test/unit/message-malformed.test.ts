import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MessageAnalyser } from '../../src/message/analyser.js';
import { analyse, assertSane, base64Lines, crlf, pseudoRandom, shape, slice, tnef, uuencode } from './message-corpus.js';

/** Runs `fn` and checks it took less than `ms`. */
function within<T>(ms: number, fn: () => T): T {
  const t0 = performance.now();
  const r = fn();
  const took = performance.now() - t0;
  assert.ok(took < ms, `took ${took.toFixed(0)} ms (limit ${ms})`);
  return r;
}

test('multipart without a boundary parameter: one leaf part', () => {
  const m = crlf('Content-Type: multipart/mixed', '', '--x', 'Content-Type: text/plain', '', 'a', '--x--');
  const r = analyse(m);
  assert.deepEqual(shape(r), ['1 multipart/mixed']);
  assert.equal(r.structure[0].End, m.length);
  assert.deepEqual(r.defects, ['multipart-no-boundary']);
});

test('a boundary that never appears: the multipart row alone, its body all preamble', () => {
  const m = crlf('Content-Type: multipart/mixed; boundary=missing', '', '--other', '', 'text', '--other--');
  const r = analyse(m);
  assert.deepEqual(shape(r), ['TEXT multipart/mixed']);
  assert.deepEqual(r.defects, ['boundary-not-found']);
});

test('nested multiparts with the same boundary: the innermost takes the lines, the structure stays finite', () => {
  const m = crlf(
    'Content-Type: multipart/mixed; boundary="b"',
    '',
    '--b',
    'Content-Type: multipart/alternative; boundary="b"',
    '',
    '--b',
    'Content-Type: text/plain',
    '',
    'plain',
    '--b',
    'Content-Type: application/x-msdownload; name="evil.exe"',
    'Content-Transfer-Encoding: base64',
    '',
    'TVqQAAMAAAAEAAAA',
    '--b--',
    '--b',
    'Content-Type: text/plain',
    '',
    'outer 2',
    '--b--',
  );
  const r = analyse(m);
  assertSane(r);
  assert.deepEqual(shape(r), ['TEXT multipart/mixed', '1 multipart/alternative', '1.1 text/plain', '1.2 application/x-msdownload', '2 text/plain']);
  assert.deepEqual(r.attachments, [{ MIMESection: 4, Name: 'evil.exe', MIMEType: 'application/x-msdownload', Size: 12, Type: 'MIME' }]);
  assert.deepEqual(r.defects, ['nested-identical-boundary']);
  assert.equal(slice(m, r.structure[4]), 'Content-Type: text/plain\r\n\r\nouter 2');
});

test('an inner multipart left open is closed by the outer boundary', () => {
  const m = crlf(
    'Content-Type: multipart/mixed; boundary=outer',
    '',
    '--outer',
    'Content-Type: multipart/alternative; boundary=inner',
    '',
    '--inner',
    '',
    'one',
    '--outer',
    '',
    'two',
    '--outer--',
  );
  const r = analyse(m);
  assert.deepEqual(shape(r), ['TEXT multipart/mixed', '1 multipart/alternative', '1.1 text/plain', '2 text/plain']);
  assert.ok(slice(m, r.structure[1]).endsWith('--inner\r\n\r\none'));
  assert.equal(slice(m, r.structure[2]), '\r\none');
  assert.deepEqual(r.defects, ['multipart-unterminated']);
});

test('a message cut in the middle of a part: everything open ends at the end of the data', () => {
  const m = crlf('Content-Type: multipart/mixed; boundary=b', '', '--b', 'Content-Type: application/pdf; name="a.pdf"', 'Content-Transfer-Encoding: base64', '', 'JVBERi0xLjQK', 'JVBE');
  const r = analyse(m);
  assert.deepEqual(shape(r), ['TEXT multipart/mixed', '1 application/pdf']);
  assert.equal(r.structure[1].End, m.length);
  assert.equal(r.attachments[0].Size, 12);
  assert.ok(r.defects.includes('multipart-unterminated'));
});

test('a part cut in its header, and a part header without the blank line', () => {
  const m = crlf(
    'Content-Type: multipart/mixed; boundary=b',
    '',
    '--b',
    'Content-Type: application/zip; name="a.zip"',
    '--b',
    'hello without header',
    'second line',
    '--b',
    'Content-Type: text/html',
    'this line is not a header',
    '--b--',
  );
  const r = analyse(m);
  assert.deepEqual(shape(r), ['TEXT multipart/mixed', '1 application/zip', '2 text/plain', '3 text/html']);
  assert.equal(slice(m, r.structure[1]), 'Content-Type: application/zip; name="a.zip"');
  assert.equal(slice(m, r.structure[2]), 'hello without header\r\nsecond line');
  assert.deepEqual(r.attachments, [{ MIMESection: 2, Name: 'a.zip', MIMEType: 'application/zip', Size: 0, Type: 'MIME' }]);
  assert.ok(r.defects.includes('header-missing-separator'));
});

test('a message that is all header (no blank line, no final CRLF)', () => {
  const r = analyse('Subject: only a header\r\nTo: a@example.org');
  assert.deepEqual(shape(r), ['1 text/plain']);
  assert.equal(r.subject, 'only a header');
  assert.deepEqual(r.to, ['a@example.org']);
});

test('bad base64: junk characters and a cut group decode best effort, and are noted', () => {
  const m = crlf(
    'Content-Type: multipart/mixed; boundary=b',
    '',
    '--b',
    'Content-Type: application/octet-stream; name="x.bin"',
    'Content-Transfer-Encoding: base64',
    '',
    'QUJD*&^%REVG',
    '!!!',
    'R0g', // 3 characters: 2 bytes
    '--b',
    'Content-Type: application/octet-stream; name="y.bin"',
    'Content-Transfer-Encoding: base64',
    '',
    'QQ==QUI=', // two padded groups back to back
    '--b',
    'Content-Type: text/plain; name="q.txt"',
    'Content-Transfer-Encoding: quoted-printable',
    '',
    'a=ZZb=4',
    '--b--',
  );
  const r = analyse(m);
  assert.deepEqual(r.attachments.map((a) => [a.Name, a.Size]), [['x.bin', 8], ['y.bin', 3], ['q.txt', 7]]);
  assert.ok(r.defects.includes('base64-invalid'));
  assert.ok(r.defects.includes('qp-invalid'));
});

test('8-bit junk and control bytes in headers: read best effort, never an exception', () => {
  const junk = Buffer.from([0x00, 0x01, 0x7f, 0x80, 0xc3, 0xc3, 0xff, 0xfe, 0x1b, 0x41]);
  const m = Buffer.concat([
    Buffer.from('From: '), junk, Buffer.from(' <a@example.org>\r\n'),
    Buffer.from('To: '), junk, Buffer.from('@example.com, b@example.com\r\n'),
    Buffer.from('Subject: '), junk, Buffer.from('\r\n'),
    junk, Buffer.from(': junk name\r\n'),
    Buffer.from('Content-Type: multipart/mixed; boundary="'), Buffer.from([0xe9]), Buffer.from('b"\r\n\r\n'),
    Buffer.from('--\xe9b\r\nContent-Type: text/plain; name="', 'latin1'), junk, Buffer.from('"\r\n\r\nx\r\n--\xe9b--\r\n', 'latin1'),
  ]);
  const r = analyse(m);
  assertSane(r);
  assert.deepEqual(shape(r), ['TEXT multipart/mixed', '1 text/plain']);
  assert.equal(r.subject, junk.toString('latin1'));
  assert.deepEqual(r.from, ['a@example.org']);
  assert.ok(r.to.includes('b@example.com'));
  assert.ok(r.defects.includes('header-8bit'));
});

test('10,000 nested multiparts: depth capped, bounded rows, linear time', () => {
  const n = 10_000;
  const parts: string[] = ['Subject: deep', `Content-Type: multipart/mixed; boundary="b0"`, ''];
  for (let i = 0; i < n; i++) parts.push(`--b${i}`, `Content-Type: multipart/mixed; boundary="b${i + 1}"`, '');
  parts.push(`--b${n}`, 'Content-Type: text/plain', '', 'bottom');
  for (let i = n; i >= 0; i--) parts.push(`--b${i}--`);
  const m = Buffer.from(crlf(...parts));
  const r = within(5000, () => analyse(m));
  assertSane(r);
  assert.equal(r.structure.length, 51); // the top level + maxDepth (50) levels; the 50th is a leaf
  assert.equal(r.structure[50].Path, Array(50).fill('1').join('.'));
  assert.ok(r.defects.includes('too-deep'));
  assert.equal(r.truncated, true);
  const deeper = new MessageAnalyser({ maxDepth: 20000, maxParts: 20000 });
  deeper.write(m);
  const all = deeper.end();
  assert.equal(all.structure.length, n + 2);
  assert.equal(all.structure[n + 1].ContentType, 'text');
  assert.equal(slice(m, all.structure[n + 1]), 'Content-Type: text/plain\r\n\r\nbottom');
});

test('10,000 nested message/rfc822 parts: depth capped', () => {
  const n = 10_000;
  const lines: string[] = [];
  for (let i = 0; i < n; i++) lines.push('Content-Type: message/rfc822', '');
  lines.push('Subject: bottom', '', 'x');
  const r = within(5000, () => analyse(crlf(...lines)));
  assertSane(r);
  assert.equal(r.structure.length, 51);
  assert.deepEqual(shape(r).slice(0, 3), ['1 message/rfc822', '1.1 message/rfc822', '1.1.1 message/rfc822']);
  assert.ok(r.defects.includes('too-deep'));
});

test('10,000 nested parts all with the same boundary: nested down to maxDepth, then siblings, capped at maxParts', () => {
  const n = 10_000;
  const lines: string[] = ['Content-Type: multipart/mixed; boundary=s', ''];
  for (let i = 0; i < n; i++) lines.push('--s', 'Content-Type: multipart/mixed; boundary=s', '');
  lines.push('--s--');
  const r = within(5000, () => analyse(crlf(...lines)));
  assertSane(r);
  assert.equal(r.structure.length, 1000);
  const deepest = Array(50).fill('1').join('.');
  assert.equal(r.structure[50].Path, deepest);
  assert.equal(r.structure[51].Path, Array(49).fill('1').join('.') + '.2');
  assert.deepEqual(r.defects.sort(), ['multipart-unterminated', 'nested-identical-boundary', 'too-deep', 'too-many-parts']);
});

test('10,000 sibling parts: the table stops at maxParts, the boundaries are still followed', () => {
  const n = 10_000;
  const lines: string[] = ['Content-Type: multipart/mixed; boundary=p', ''];
  for (let i = 0; i < n; i++) lines.push('--p', `Content-Type: application/octet-stream; name="f${i}"`, '', 'x');
  lines.push('--p--', 'epilogue');
  const m = crlf(...lines);
  const r = within(5000, () => analyse(m));
  assert.equal(r.structure.length, 1000);
  assert.equal(r.attachments.length, 999);
  assert.equal(r.structure[0].End, m.length);
  assert.deepEqual(r.defects, ['too-many-parts']);
  const a = new MessageAnalyser({ maxParts: 20_000, maxAttachments: 20_000 });
  a.write(Buffer.from(m));
  const all = a.end();
  assert.equal(all.structure.length, n + 1);
  assert.equal(all.structure[n].Path, String(n));
  assert.equal(all.attachments.length, n);
});

test('a 10 MB line without any line break is read in pieces; the boundary after it is found', () => {
  const head = Buffer.from(crlf('Content-Type: multipart/mixed; boundary=b', '', '--b', 'Content-Type: application/octet-stream; name="long"', ''));
  const long = Buffer.alloc(10 * 1024 * 1024, 0x41);
  const tail = Buffer.from('\r\n--b\r\nContent-Type: text/plain\r\n\r\nafter\r\n--b--\r\n');
  const a = new MessageAnalyser();
  for (const b of [head, long, tail]) for (let i = 0; i < b.length; i += 65536) a.write(b.subarray(i, i + 65536));
  const r = a.end();
  assert.deepEqual(shape(r), ['TEXT multipart/mixed', '1 application/octet-stream', '2 text/plain']);
  assert.equal(r.attachments[0].Size, long.length);
  assert.equal(r.structure[1].End, head.length + long.length);
  assert.ok(r.defects.includes('line-too-long'));
});

test('a header far over maxHeaderBytes is cut; the body is still found', () => {
  const lines: string[] = [];
  for (let i = 0; i < 20_000; i++) lines.push(`X-Filler-${i}: ${'v'.repeat(100)}`);
  const m = crlf('Subject: big', ...lines, 'Content-Type: text/html', '', '<p>x</p>');
  const r = analyse(m, { maxHeaderBytes: 64 * 1024 });
  assert.equal(r.subject, 'big');
  assert.ok(r.headers.length < 1000);
  assert.equal(r.truncated, true);
  assert.ok(r.defects.includes('header-too-long'));
  // the Content-Type past the budget is not kept: the default applies (best effort)
  assert.deepEqual(shape(r), ['1 text/plain']);
  assert.equal(r.structure[0].End, m.length);
});

test('a folded header line continued forever stays within the budget', () => {
  const a = new MessageAnalyser({ maxHeaderBytes: 4096 });
  a.write(Buffer.from('Subject: start\r\n'));
  const cont = Buffer.from(' more more more more more more more more more more\r\n'.repeat(1000));
  for (let i = 0; i < 100; i++) a.write(cont);
  a.write(Buffer.from('\r\nbody\r\n'));
  const r = a.end();
  assert.ok(r.headers[0].value.length <= 4096);
  assert.ok(r.defects.includes('header-too-long'));
});

test('random damage to a corpus message: never an exception, always a sane result', () => {
  const base = Buffer.from(
    crlf(
      'From: a@example.org',
      'To: b@example.com',
      'Subject: =?utf-8?q?fuzz?=',
      'Content-Type: multipart/mixed; boundary=b',
      '',
      '--b',
      'Content-Type: multipart/alternative; boundary=c',
      '',
      '--c',
      'Content-Type: text/plain',
      'Content-Transfer-Encoding: quoted-printable',
      '',
      'hello=20world',
      ...uuencode('u.bin', pseudoRandom(90, 1)),
      '--c--',
      '--b',
      'Content-Type: message/rfc822',
      '',
      'Subject: inner',
      'Content-Type: application/ms-tnef',
      'Content-Transfer-Encoding: base64',
      '',
      ...base64Lines(tnef([{ title: 't.txt', data: Buffer.from('tnef') }])),
      '--b',
      'Content-Type: application/mac-binhex40',
      '',
      ':!!!!:',
      '--b--',
    ),
  );
  let seed = 12345;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const tokens = ['\r\n', '--b', '--c', '--b--', ':', '=', '\r', '\n', '\x00', '\xff', 'begin 644 x', '(This file must be converted', 'Content-Type: multipart/mixed; boundary=b'];
  for (let i = 0; i < 300; i++) {
    let m = Buffer.from(base);
    const edits = 1 + rnd(8);
    for (let e = 0; e < edits; e++) {
      const at = rnd(m.length + 1);
      switch (rnd(4)) {
        case 0: // flip a byte
          if (m.length) m[Math.min(at, m.length - 1)] = rnd(256);
          break;
        case 1: // insert a token
          m = Buffer.concat([m.subarray(0, at), Buffer.from(tokens[rnd(tokens.length)], 'latin1'), m.subarray(at)]);
          break;
        case 2: // delete a run
          m = Buffer.concat([m.subarray(0, at), m.subarray(Math.min(m.length, at + rnd(40)))]);
          break;
        default: // cut the message
          m = m.subarray(0, at);
      }
    }
    const a = new MessageAnalyser({ maxLineBytes: 1024 });
    for (let p = 0; p < m.length; p += 1 + (p % 17)) a.write(m.subarray(p, p + 1 + (p % 17)));
    const r = a.end();
    assertSane(r);
    assert.equal(r.size, m.length);
  }
});

test('memory stays bounded: a 64 MB base64 attachment streamed through', () => {
  const chunk = Buffer.from(base64Lines(pseudoRandom(57 * 1000, 77)).join('\r\n') + '\r\n'); // 57,000 bytes per chunk decoded
  const rounds = Math.ceil((64 * 1024 * 1024) / chunk.length);
  const a = new MessageAnalyser();
  a.write(Buffer.from(crlf('Content-Type: multipart/mixed; boundary=b', '', '--b', 'Content-Type: application/octet-stream; name="big.bin"', 'Content-Transfer-Encoding: base64', '')));
  global.gc?.();
  const before = process.memoryUsage().heapUsed;
  let peak = before;
  for (let i = 0; i < rounds; i++) {
    a.write(chunk);
    if (i % 100 === 0) peak = Math.max(peak, process.memoryUsage().heapUsed);
  }
  a.write(Buffer.from('--b--\r\n'));
  const r = a.end();
  assert.equal(r.attachments[0].Size, rounds * 57 * 1000);
  assert.ok(r.size > 64 * 1024 * 1024);
  // garbage may build up between collections, but nothing grows with the message
  assert.ok(peak - before < 48 * 1024 * 1024, `heap grew by ${((peak - before) / 1048576).toFixed(1)} MB`);
});

test('misuse of the API throws; malformed input never does', () => {
  const a = new MessageAnalyser();
  a.end();
  assert.throws(() => a.write(Buffer.from('x')));
  assert.throws(() => a.end());
});
