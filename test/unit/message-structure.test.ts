import { test } from 'node:test';
import assert from 'node:assert/strict';
import { analyse, assertSane, crlf, shape, slice } from './message-corpus.js';
import type { AnalysisResult, MimePart } from '../../src/message/types.js';

function row(r: AnalysisResult, path: string): MimePart {
  const p = r.structure.find((x) => x.Path === path);
  assert.ok(p, `no row ${path} in ${shape(r).join(', ')}`);
  return p;
}

// ---- RFC 3501 §6.4.5: the example message, every section -----------------------------------

const RFC3501 = crlf(
  'Return-Path: <sender@example.org>',
  'Received: from client.example ([192.0.2.1]) by mx.example; Mon, 1 Jan 2024 00:00:00 +0000',
  'From: sender@example.org',
  'To: rcpt@example.com',
  'Subject: RFC 3501 example',
  'MIME-Version: 1.0',
  'Content-Type: MULTIPART/MIXED; boundary="outer"',
  '',
  'This is the preamble.',
  '--outer',
  'Content-Type: TEXT/PLAIN',
  '',
  'part 1',
  '--outer',
  'Content-Type: APPLICATION/OCTET-STREAM',
  'Content-Transfer-Encoding: base64',
  '',
  'AAECAw==',
  '--outer',
  'Content-Type: MESSAGE/RFC822',
  '',
  'Subject: inner 3',
  'Content-Type: multipart/mixed; boundary="in3"',
  '',
  '--in3',
  'Content-Type: text/plain',
  '',
  'part 3.1',
  '--in3',
  'Content-Type: application/octet-stream',
  '',
  '3.2 data',
  '--in3--',
  '--outer',
  'Content-Type: MULTIPART/MIXED; boundary="four"',
  '',
  '--four',
  'Content-Type: IMAGE/GIF',
  '',
  'GIF89a',
  '--four',
  'Content-Type: MESSAGE/RFC822',
  '',
  'Subject: inner 4.2',
  'Content-Type: multipart/mixed; boundary="in42"',
  '',
  '--in42',
  'Content-Type: text/plain',
  '',
  'part 4.2.1',
  '--in42',
  'Content-Type: multipart/alternative; boundary="alt"',
  '',
  '--alt',
  'Content-Type: text/plain',
  '',
  'plain',
  '--alt',
  'Content-Type: text/richtext',
  '',
  'rich',
  '--alt--',
  '--in42--',
  '--four--',
  '--outer--',
  'This is the epilogue.',
);

test('RFC 3501 example: every section numbered as in the RFC table', () => {
  const r = analyse(RFC3501);
  assertSane(r);
  assert.deepEqual(shape(r), [
    'TEXT multipart/mixed',
    '1 text/plain',
    '2 application/octet-stream',
    '3 message/rfc822',
    '3.TEXT multipart/mixed',
    '3.1 text/plain',
    '3.2 application/octet-stream',
    '4 multipart/mixed',
    '4.1 image/gif',
    '4.2 message/rfc822',
    '4.2.TEXT multipart/mixed',
    '4.2.1 text/plain',
    '4.2.2 multipart/alternative',
    '4.2.2.1 text/plain',
    '4.2.2.2 text/richtext',
  ]);
  assert.deepEqual(r.defects, []);
  assert.equal(r.truncated, false);
  assert.equal(r.size, Buffer.byteLength(RFC3501));
});

test('RFC 3501 example: Start/End slice each entity out of the stored message exactly', () => {
  const r = analyse(RFC3501);
  const s = (path: string): string => slice(RFC3501, row(r, path));
  assert.equal(s('TEXT'), RFC3501);
  assert.equal(row(r, 'TEXT').Start, 0);
  assert.equal(row(r, 'TEXT').End, r.size);
  assert.equal(s('1'), 'Content-Type: TEXT/PLAIN\r\n\r\npart 1');
  assert.equal(s('2'), 'Content-Type: APPLICATION/OCTET-STREAM\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAw==');
  const three = s('3');
  assert.ok(three.startsWith('Content-Type: MESSAGE/RFC822\r\n\r\nSubject: inner 3\r\n'), three);
  assert.ok(three.endsWith('\r\n3.2 data\r\n--in3--'), three);
  assert.equal(s('3.TEXT'), three.slice('Content-Type: MESSAGE/RFC822\r\n\r\n'.length));
  assert.equal(s('3.1'), 'Content-Type: text/plain\r\n\r\npart 3.1');
  assert.equal(s('3.2'), 'Content-Type: application/octet-stream\r\n\r\n3.2 data');
  assert.ok(s('4').startsWith('Content-Type: MULTIPART/MIXED; boundary="four"\r\n\r\n--four\r\n'));
  assert.ok(s('4').endsWith('--in42--\r\n--four--'));
  assert.equal(s('4.1'), 'Content-Type: IMAGE/GIF\r\n\r\nGIF89a');
  assert.ok(s('4.2').endsWith('--alt--\r\n--in42--'));
  assert.equal(s('4.2.TEXT'), s('4.2').slice('Content-Type: MESSAGE/RFC822\r\n\r\n'.length));
  assert.equal(s('4.2.1'), 'Content-Type: text/plain\r\n\r\npart 4.2.1');
  assert.equal(
    s('4.2.2'),
    'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n--alt\r\nContent-Type: text/plain\r\n\r\nplain\r\n--alt\r\nContent-Type: text/richtext\r\n\r\nrich\r\n--alt--',
  );
  assert.equal(s('4.2.2.1'), 'Content-Type: text/plain\r\n\r\nplain');
  assert.equal(s('4.2.2.2'), 'Content-Type: text/richtext\r\n\r\nrich');
});

test('RFC 3501 example: every field of a row', () => {
  const r = analyse(RFC3501);
  const start = RFC3501.indexOf('Content-Type: TEXT/PLAIN');
  assert.deepEqual(row(r, '1'), {
    Path: '1',
    ContentType: 'text',
    ContentSubtype: 'plain',
    ContentTypeFilename: '',
    ContentDisposition: '',
    ContentDispositionFilename: '',
    Start: start,
    End: start + 'Content-Type: TEXT/PLAIN\r\n\r\npart 1'.length,
  });
});

// ---- single-part messages -------------------------------------------------------------------

test('a message without MIME is one text/plain section "1" covering the whole message', () => {
  const m = crlf('Return-Path: <a@example.org>', 'From: a@example.org', 'Subject: hi', '', 'hello', 'world');
  const r = analyse(m);
  assert.deepEqual(r.structure, [
    {
      Path: '1',
      ContentType: 'text',
      ContentSubtype: 'plain',
      ContentTypeFilename: '',
      ContentDisposition: '',
      ContentDispositionFilename: '',
      Start: 0,
      End: m.length,
    },
  ]);
  assert.deepEqual(r.attachments, []);
  assert.deepEqual(r.defects, []);
});

test('a single-part message keeps its type, and a single-part attachment is listed', () => {
  const m = crlf(
    'From: a@example.org',
    'MIME-Version: 1.0',
    'Content-Type: application/pdf; name="doc.pdf"',
    'Content-Disposition: attachment; filename="doc.pdf"',
    'Content-Transfer-Encoding: base64',
    '',
    Buffer.from('%PDF-1.4 tiny').toString('base64'),
  );
  const r = analyse(m);
  assert.deepEqual(shape(r), ['1 application/pdf']);
  assert.equal(r.structure[0].ContentTypeFilename, 'doc.pdf');
  assert.equal(r.structure[0].ContentDisposition, 'attachment');
  assert.deepEqual(r.attachments, [{ MIMESection: 1, Name: 'doc.pdf', MIMEType: 'application/pdf', Size: 13, Type: 'MIME' }]);
});

test('an empty message is one empty section', () => {
  const r = analyse('');
  assert.deepEqual(shape(r), ['1 text/plain']);
  assert.equal(r.structure[0].Start, 0);
  assert.equal(r.structure[0].End, 0);
  assert.equal(r.size, 0);
});

test('a top-level message/rfc822 is "1", the message inside it "1.1"', () => {
  const m = crlf('Content-Type: message/rfc822', '', 'Subject: inner', '', 'inner body');
  const r = analyse(m);
  assert.deepEqual(shape(r), ['1 message/rfc822', '1.1 text/plain']);
  assert.equal(slice(m, row(r, '1.1')), 'Subject: inner\r\n\r\ninner body\r\n');
});

// ---- typical multiparts ---------------------------------------------------------------------

const HTML_MAIL = crlf(
  'From: "Alice" <alice@example.org>',
  'To: bob@example.com',
  'Subject: newsletter',
  'MIME-Version: 1.0',
  'Content-Type: multipart/mixed;',
  '\tboundary="----=_Part_0_1"',
  '',
  '------=_Part_0_1',
  'Content-Type: multipart/related; boundary="----=_Part_1_2"; type="multipart/alternative"',
  '',
  '------=_Part_1_2',
  'Content-Type: multipart/alternative; boundary="----=_Part_2_3"',
  '',
  '------=_Part_2_3',
  'Content-Type: text/plain; charset=utf-8',
  'Content-Transfer-Encoding: quoted-printable',
  '',
  'Caf=C3=A9 news',
  '------=_Part_2_3',
  'Content-Type: text/html; charset=utf-8',
  '',
  '<p>Caf\u00e9 <img src="cid:logo"></p>',
  '------=_Part_2_3--',
  '',
  '------=_Part_1_2',
  'Content-Type: image/png',
  'Content-ID: <logo>',
  'Content-Disposition: inline',
  'Content-Transfer-Encoding: base64',
  '',
  'iVBORw0KGgo=',
  '------=_Part_1_2--',
  '',
  '------=_Part_0_1',
  'Content-Type: application/vnd.openxmlformats-officedocument.wordprocessingml.document;',
  ' name="report.docx"',
  'Content-Disposition: attachment;',
  ' filename="report.docx"',
  'Content-Transfer-Encoding: base64',
  '',
  'UEsDBBQAAAAIAA==',
  '------=_Part_0_1--',
);

test('mixed / related / alternative: rows, types, filenames, offsets', () => {
  const r = analyse(HTML_MAIL);
  assertSane(r);
  assert.deepEqual(shape(r), [
    'TEXT multipart/mixed',
    '1 multipart/related',
    '1.1 multipart/alternative',
    '1.1.1 text/plain',
    '1.1.2 text/html',
    '1.2 image/png',
    '2 application/vnd.openxmlformats-officedocument.wordprocessingml.document',
  ]);
  assert.equal(row(r, '1.2').ContentDisposition, 'inline');
  assert.equal(row(r, '2').ContentTypeFilename, 'report.docx');
  assert.equal(row(r, '2').ContentDispositionFilename, 'report.docx');
  assert.equal(row(r, '2').ContentDisposition, 'attachment');
  // a multipart ends with its epilogue: here the line break after its close delimiter (the
  // blank line's CRLF that follows belongs to the next boundary line)
  assert.ok(slice(HTML_MAIL, row(r, '1.1')).endsWith('<p>Caf\u00e9 <img src="cid:logo"></p>\r\n------=_Part_2_3--\r\n'));
  assert.equal(slice(HTML_MAIL, row(r, '1.1.1')), 'Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCaf=C3=A9 news');
  assert.ok(slice(HTML_MAIL, row(r, '1')).endsWith('iVBORw0KGgo=\r\n------=_Part_1_2--\r\n'));
  // the inline image has no name: not an attachment
  assert.deepEqual(r.attachments, [
    {
      MIMESection: 7,
      Name: 'report.docx',
      MIMEType: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
      Size: 10, // UEsDBBQAAAAIAA== decoded
      Type: 'MIME',
    },
  ]);
});

test('offsets of a message with 8-bit content count bytes, not characters', () => {
  const r = analyse(HTML_MAIL);
  const html = row(r, '1.1.2');
  const bytes = Buffer.from(HTML_MAIL, 'utf8');
  assert.equal(bytes.subarray(html.Start, html.End).toString('utf8'), 'Content-Type: text/html; charset=utf-8\r\n\r\n<p>Caf\u00e9 <img src="cid:logo"></p>');
});

test('multipart/digest: parts default to message/rfc822', () => {
  const m = crlf(
    'Content-Type: multipart/digest; boundary=d',
    '',
    '--d',
    '',
    'Subject: first',
    '',
    'one',
    '--d',
    '',
    'Subject: second',
    'Content-Type: text/html',
    '',
    '<b>two</b>',
    '--d',
    'Content-Type: text/plain',
    '',
    'not a message',
    '--d--',
  );
  const r = analyse(m);
  assert.deepEqual(shape(r), ['TEXT multipart/digest', '1 message/rfc822', '1.1 text/plain', '2 message/rfc822', '2.1 text/html', '3 text/plain']);
  assert.equal(slice(m, row(r, '1')), '\r\nSubject: first\r\n\r\none');
  assert.equal(slice(m, row(r, '1.1')), 'Subject: first\r\n\r\none');
});

test('a message/rfc822 attachment: listed as MIME with the size of the message it holds', () => {
  const inner = crlf('From: x@example.org', 'Subject: fwd', '', 'forwarded');
  const m = crlf(
    'Content-Type: multipart/mixed; boundary=b',
    '',
    '--b',
    'Content-Type: text/plain',
    '',
    'see attached',
    '--b',
    'Content-Type: message/rfc822; name="fwd.eml"',
    'Content-Disposition: attachment; filename="fwd.eml"',
    '',
    inner.slice(0, -2),
    '--b--',
  );
  const r = analyse(m);
  assert.deepEqual(shape(r), ['TEXT multipart/mixed', '1 text/plain', '2 message/rfc822', '2.1 text/plain']);
  assert.equal(slice(m, row(r, '2.1')), inner.slice(0, -2));
  assert.deepEqual(r.attachments, [{ MIMESection: 3, Name: 'fwd.eml', MIMEType: 'message/rfc822', Size: inner.length - 2, Type: 'MIME' }]);
});

test('a base64-encoded message/rfc822 is a leaf', () => {
  const m = crlf('Content-Type: multipart/mixed; boundary=b', '', '--b', 'Content-Type: message/rfc822', 'Content-Transfer-Encoding: base64', '', Buffer.from('Subject: x\r\n\r\ny').toString('base64'), '--b--');
  const r = analyse(m);
  assert.deepEqual(shape(r), ['TEXT multipart/mixed', '1 message/rfc822']);
});

// ---- boundaries ------------------------------------------------------------------------------

test('boundary lines: transport padding accepted, longer lines and prefixes are content', () => {
  const m = crlf(
    'Content-Type: multipart/mixed; boundary="simple boundary"',
    '',
    '--simple boundary \t',
    '',
    'one',
    '--simple boundaryX',
    '--simple boundary-- not close',
    '-simple boundary',
    '--simple boundary',
    'Content-Type: text/plain; charset=us-ascii',
    '',
    'two',
    '--simple boundary--  ',
    'epilogue',
  );
  const r = analyse(m);
  assert.deepEqual(shape(r), ['TEXT multipart/mixed', '1 text/plain', '2 text/plain']);
  assert.equal(slice(m, row(r, '1')), '\r\none\r\n--simple boundaryX\r\n--simple boundary-- not close\r\n-simple boundary');
  assert.equal(slice(m, row(r, '2')), 'Content-Type: text/plain; charset=us-ascii\r\n\r\ntwo');
  assert.deepEqual(r.defects, []);
});

test('a boundary that is a prefix of another is told apart', () => {
  const m = crlf(
    'Content-Type: multipart/mixed; boundary=b',
    '',
    '--b',
    'Content-Type: multipart/alternative; boundary=bb',
    '',
    '--bb',
    '',
    'alt 1',
    '--bb',
    '',
    'alt 2',
    '--bb--',
    '--b',
    '',
    'two',
    '--b--',
  );
  const r = analyse(m);
  assert.deepEqual(shape(r), ['TEXT multipart/mixed', '1 multipart/alternative', '1.1 text/plain', '1.2 text/plain', '2 text/plain']);
  assert.deepEqual(r.defects, []);
});

test('an empty part between two boundary lines has Start == End', () => {
  const m = crlf('Content-Type: multipart/mixed; boundary=b', '', '--b', '--b', 'Content-Type: text/html', '', 'x', '--b--');
  const r = analyse(m);
  assert.deepEqual(shape(r), ['TEXT multipart/mixed', '1 text/plain', '2 text/html']);
  assert.equal(row(r, '1').Start, row(r, '1').End);
  assert.equal(slice(m, row(r, '2')), 'Content-Type: text/html\r\n\r\nx');
});

test('a last line without CRLF: the close delimiter is still found, the top level ends at the size', () => {
  const m = 'Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--';
  const r = analyse(m);
  assert.deepEqual(shape(r), ['TEXT multipart/mixed', '1 text/plain']);
  assert.equal(slice(m, row(r, '1')), '\r\nx');
  assert.equal(row(r, 'TEXT').End, m.length);
  assert.deepEqual(r.defects, []);
});

test('bare LF line endings: the LF in front of a boundary belongs to it', () => {
  const m = 'Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\none\ntwo\n--b\n\nthree\n--b--\n';
  const r = analyse(m);
  assert.deepEqual(shape(r), ['TEXT multipart/mixed', '1 text/plain', '2 text/plain']);
  assert.equal(slice(m, row(r, '1')), 'Content-Type: text/plain\n\none\ntwo');
  assert.equal(slice(m, row(r, '2')), '\nthree');
});

test('the boundary parameter is read with RFC 2045 syntax: quoted, unquoted, case of the name, comments', () => {
  for (const ct of ['multipart/mixed; BOUNDARY="=_x y"', 'Multipart/Mixed;boundary="=_x y" (comment)', 'multipart/mixed; charset=x;\r\n boundary="=_x y"']) {
    const m = `Content-Type: ${ct}\r\n\r\n--=_x y\r\n\r\na\r\n--=_x y--\r\n`;
    const r = analyse(m);
    assert.deepEqual(shape(r), ['TEXT multipart/mixed', '1 text/plain'], ct);
  }
  const unquoted = analyse('Content-Type: multipart/mixed; boundary==_NextPart_000\r\n\r\n--=_NextPart_000\r\n\r\na\r\n--=_NextPart_000--\r\n');
  assert.deepEqual(shape(unquoted), ['TEXT multipart/mixed', '1 text/plain']);
});
