import { test } from 'node:test';
import assert from 'node:assert/strict';
import { analyse, crlf } from './message-corpus.js';
import { HeaderCollector, decodeHeaderBytes, fieldNameEnd } from '../../src/message/header-parser.js';
import { parseAddressList, parseContentDisposition, parseContentType, paramFilename } from '../../src/message/header-values.js';

test('top-level header: every field in order, folded values unfolded, Return-Path/Received included', () => {
  const m = crlf(
    'Return-Path: <sender@example.org>',
    'Received: from client.example (client.example [192.0.2.1])',
    '\tby mx.example with ESMTP id 123',
    '        for <rcpt@example.com>; Mon, 1 Jan 2024 00:00:00 +0000',
    'Subject:   spaced   ',
    'X-Empty:',
    'X-Obsolete : value',
    'To: rcpt@example.com',
    '',
    'Body: not a header',
  );
  const r = analyse(m);
  assert.deepEqual(r.headers, [
    { name: 'Return-Path', value: '<sender@example.org>' },
    { name: 'Received', value: 'from client.example (client.example [192.0.2.1])\tby mx.example with ESMTP id 123        for <rcpt@example.com>; Mon, 1 Jan 2024 00:00:00 +0000' },
    { name: 'Subject', value: 'spaced' },
    { name: 'X-Empty', value: '' },
    { name: 'X-Obsolete', value: 'value' },
    { name: 'To', value: 'rcpt@example.com' },
  ]);
  assert.equal(r.subject, 'spaced');
});

test('subject: RFC 2047 encoded words in several charsets, Q and B, adjacent words joined', () => {
  const cases: [string, string][] = [
    ['=?UTF-8?Q?caf=C3=A9_au_lait?=', 'café au lait'],
    ['=?utf-8?B?8J+YgCBzbWlsZQ==?=', '😀 smile'],
    ['=?ISO-8859-1?Q?Andr=E9?= Pirard', 'André Pirard'],
    ['=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=', 'ab'], // whitespace between encoded words is dropped (RFC 2047 §6.2)
    ['=?ISO-8859-1?Q?a?=  b', 'a  b'],
    ['=?windows-1252?Q?=80_price?=', '€ price'],
    ['=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=', 'テスト'],
    ['=?KOI8-R?B?8NLJ18XU?=', 'Привет'],
    ['plain ascii', 'plain ascii'],
  ];
  for (const [raw, decoded] of cases) {
    const r = analyse(crlf(`Subject: ${raw}`, '', 'x'));
    assert.equal(r.subject, decoded, raw);
    assert.equal(r.headers[0].value, raw);
  }
});

test('subject: folded encoded words, raw UTF-8 (RFC 6532) and a missing subject', () => {
  assert.equal(analyse(crlf('Subject: =?utf-8?q?first?=', ' =?utf-8?q?_second?=', '', 'x')).subject, 'first second');
  assert.equal(analyse(crlf('Subject: Grüße aus Köln', '', 'x')).subject, 'Grüße aus Köln');
  assert.equal(analyse(crlf('From: a@example.org', '', 'x')).subject, '');
  // the first Subject field counts
  assert.equal(analyse(crlf('Subject: one', 'Subject: two', '', 'x')).subject, 'one');
});

test('subject: malformed encoded words never throw', () => {
  for (const raw of ['=?utf-8?B?!!!?=', '=?unknown-charset?Q?abc?=', '=?utf-8?X?abc?=', '=?utf-8?Q?a=ZZ?=', '=?', '=?utf-8?q?']) {
    const r = analyse(crlf(`Subject: ${raw}`, '', 'x'));
    assert.equal(typeof r.subject, 'string', raw);
  }
});

test('To/Cc/From: groups, comments, display names, quoted local parts, several fields', () => {
  const m = crlf(
    'From: "Doe, John" <john.doe@example.org> (work)',
    'To: Team: alice@example.com, "Bob B." <bob@example.com>;,',
    ' (comment only) carol@example.com (Carol), <dave@example.com>',
    'To: "john q"@example.net, undisclosed-recipients:;',
    'Cc: =?utf-8?q?J=C3=B6rg?= <joerg@example.de>, Mary <"mary smith"@example.com>',
    'CC: eve@example.com',
    'Bcc: hidden@example.com',
    '',
    'x',
  );
  const r = analyse(m);
  assert.deepEqual(r.from, ['john.doe@example.org']);
  assert.deepEqual(r.to, ['alice@example.com', 'bob@example.com', 'carol@example.com', 'dave@example.com', '"john q"@example.net']);
  assert.deepEqual(r.cc, ['joerg@example.de', '"mary smith"@example.com', 'eve@example.com']);
});

test('address lists: what is not an address is left out', () => {
  assert.deepEqual(parseAddressList('undisclosed-recipients:;'), []);
  assert.deepEqual(parseAddressList('Just A Name'), []);
  assert.deepEqual(parseAddressList(''), []);
  assert.deepEqual(parseAddressList('a@b.example,,, ,c@d.example'), ['a@b.example', 'c@d.example']);
  assert.deepEqual(parseAddressList('<>'), []);
});

test('header parser: field names, continuation pieces, not-header lines, mbox From line', () => {
  assert.equal(fieldNameEnd(Buffer.from('Subject: x')), 7);
  assert.equal(fieldNameEnd(Buffer.from('Subject  : x')), 9);
  assert.equal(fieldNameEnd(Buffer.from(': x')), -1);
  assert.equal(fieldNameEnd(Buffer.from('no colon')), -1);
  assert.equal(fieldNameEnd(Buffer.from('two words: x')), -1);
  assert.equal(fieldNameEnd(Buffer.from('X-\xe9t\xe9: x', 'latin1')), 5);

  const h = new HeaderCollector(1000, undefined, true);
  assert.equal(h.line(Buffer.from('From sender@example.org Mon Jan  1 00:00:00 2024'), false), 'ignored');
  assert.equal(h.line(Buffer.from('Subject: a'), false), 'field');
  assert.equal(h.line(Buffer.from('bc'), true), 'continuation'); // a piece of the same long line
  assert.equal(h.line(Buffer.from(' d'), false), 'continuation');
  assert.equal(h.line(Buffer.from('body text'), false), 'not-header');
  h.finish();
  assert.deepEqual(h.fields.map((f) => [f.name, f.value]), [['Subject', 'abc d']]);
});

test('header parser: the byte budget keeps the first fields whole and cuts the rest', () => {
  // names and values count: "A" + " 0123456789" = 12, twice = 24, "C" = 25, 5 bytes of value left
  const h = new HeaderCollector(30);
  h.line(Buffer.from('A: 0123456789'), false);
  h.line(Buffer.from('B: 0123456789'), false);
  h.line(Buffer.from('C: 0123456789'), false);
  h.finish();
  assert.equal(h.overflow, true);
  assert.deepEqual(h.fields.map((f) => [f.name, f.value]), [['A', '0123456789'], ['B', '0123456789'], ['C', '0123']]);
});

test('8-bit header bytes: UTF-8 when valid, else one character per byte', () => {
  assert.deepEqual(decodeHeaderBytes(Buffer.from('Grüße')), { text: 'Grüße', latin1: false });
  assert.deepEqual(decodeHeaderBytes(Buffer.from([0x47, 0x72, 0xfc, 0xdf, 0x65])), { text: 'Grüße', latin1: true });
  const m = Buffer.concat([Buffer.from('Subject: caf'), Buffer.from([0xe9, 0xff, 0x00, 0x80]), Buffer.from('\r\nX-\xe9: v\r\n\r\nbody\r\n', 'latin1')]);
  const r = analyse(m);
  assert.equal(r.subject, 'caf\u00e9\u00ff\u0000\u0080');
  assert.deepEqual(r.headers[1], { name: 'X-\u00e9', value: 'v' });
  assert.ok(r.defects.includes('header-8bit'));
});

test('Content-Type / Content-Disposition values: RFC 2231 continuations and charsets, RFC 2047 in names', () => {
  const ct = parseContentType('Application/PDF; NAME="=?UTF-8?B?0L/RgNC40LLQtdGCLnBkZg==?="', 'text/plain');
  assert.equal(ct.type, 'application');
  assert.equal(ct.subtype, 'pdf');
  assert.equal(paramFilename(ct.params, ct.decoded, 'name'), 'привет.pdf');
  const cd = parseContentDisposition("Attachment; filename*0*=utf-8''%E2%82%AC%20rates; filename*1=\" =?x?q?y?=.txt\"");
  assert.equal(cd.disposition, 'attachment');
  // segments from RFC 2231 are already decoded: no RFC 2047 decoding on top
  assert.equal(paramFilename(cd.params, cd.decoded, 'filename'), '€ rates =?x?q?y?=.txt');
  assert.equal(parseContentType(undefined, 'text/plain').type, 'text');
  assert.equal(parseContentType('', 'message/rfc822').subtype, 'rfc822');
  assert.deepEqual([parseContentType('text', 'text/plain').type, parseContentType('text', 'text/plain').subtype], ['text', '']);
});

test('headers of parts are not in the top-level header list', () => {
  const r = analyse(crlf('Subject: top', 'Content-Type: multipart/mixed; boundary=b', '', '--b', 'Subject: part', 'Content-Type: text/plain', '', 'x', '--b--'));
  assert.deepEqual(r.headers.map((h) => h.name), ['Subject', 'Content-Type']);
  assert.equal(r.subject, 'top');
});
