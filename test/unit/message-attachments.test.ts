import { test } from 'node:test';
import assert from 'node:assert/strict';
import { analyse, assertSane, base64Lines, binhex, crlf, pseudoRandom, shape, slice, tnef, uuencode } from './message-corpus.js';

function mixed(...parts: string[][]): string {
  const lines = ['From: a@example.org', 'To: b@example.com', 'Subject: files', 'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="==b=="', '', 'preamble'];
  for (const p of parts) lines.push('--==b==', ...p);
  lines.push('--==b==--');
  return crlf(...lines);
}

// ---- MIME attachments --------------------------------------------------------------------------

test('MIME attachments: decoded sizes for base64, quoted-printable, 7bit; MIMESection is the row index', () => {
  const bin = pseudoRandom(1000, 3);
  const qpText = 'caf\u00e9 = 1\r\nsecond line that is long enough to need a soft break somewhere around here ok';
  const qp = 'caf=C3=A9 =3D 1\r\nsecond line that is long enough to need a soft break somewhere aro=\r\nund here ok';
  const m = mixed(
    ['Content-Type: text/plain', '', 'hello'],
    ['Content-Type: application/octet-stream; name="data.bin"', 'Content-Transfer-Encoding: base64', 'Content-Disposition: attachment; filename="data.bin"', '', ...base64Lines(bin)],
    ['Content-Type: text/plain; charset=utf-8; name="notes.txt"', 'Content-Transfer-Encoding: quoted-printable', '', qp],
    ['Content-Type: text/csv', 'Content-Disposition: attachment', '', 'a,b', '1,2'],
  );
  const r = analyse(m);
  assertSane(r);
  assert.deepEqual(shape(r), ['TEXT multipart/mixed', '1 text/plain', '2 application/octet-stream', '3 text/plain', '4 text/csv']);
  assert.deepEqual(r.attachments, [
    { MIMESection: 3, Name: 'data.bin', MIMEType: 'application/octet-stream', Size: 1000, Type: 'MIME' },
    { MIMESection: 4, Name: 'notes.txt', MIMEType: 'text/plain', Size: Buffer.byteLength(qpText), Type: 'MIME' },
    { MIMESection: 5, Name: '', MIMEType: 'text/csv', Size: 'a,b\r\n1,2'.length, Type: 'MIME' },
  ]);
  assert.equal(r.structure[r.attachments[0].MIMESection - 1].Path, '2');
  assert.deepEqual(r.defects, []);
});

test('Unicode file names: RFC 2231 (charsets, languages, continuations), RFC 2047, raw UTF-8', () => {
  const m = mixed(
    ['Content-Type: application/pdf', "Content-Disposition: attachment; filename*=utf-8''%F0%9F%93%84%20r%C3%A9sum%C3%A9.pdf", '', 'x'],
    ['Content-Type: application/pdf', "Content-Disposition: attachment; filename*=iso-8859-1'fr'%E9t%E9.pdf", '', 'x'],
    [
      'Content-Type: application/pdf',
      'Content-Disposition: attachment;',
      " filename*0*=UTF-8''%D0%BE%D1%82%D1%87%D1%91%D1%82;",
      ' filename*1*=%20%E2%84%96%201;',
      ' filename*2=".pdf"',
      '',
      'x',
    ],
    ['Content-Type: application/pdf; name="=?UTF-8?B?5pel5pys6Kqe44OV44Kh44Kk44OrLnBkZg==?="', '', 'x'],
    ['Content-Type: application/pdf; name="Gr\u00fc\u00dfe.pdf"', 'Content-Disposition: attachment; filename="Gr\u00fc\u00dfe.pdf"', '', 'x'],
    ['Content-Type: application/pdf; name="=?iso-8859-1?Q?na=EFve.pdf?="', "Content-Disposition: attachment; filename*=utf-8''na%C3%AFve%20long.pdf", '', 'x'],
  );
  const r = analyse(m);
  assert.deepEqual(
    r.structure.slice(1).map((p) => [p.ContentTypeFilename, p.ContentDispositionFilename]),
    [
      ['', '📄 résumé.pdf'],
      ['', 'été.pdf'],
      ['', 'отчёт № 1.pdf'],
      ['日本語ファイル.pdf', ''],
      ['Grüße.pdf', 'Grüße.pdf'],
      ['naïve.pdf', 'naïve long.pdf'],
    ],
  );
  // the attachment's name: the disposition's filename first, else the type's name
  assert.deepEqual(r.attachments.map((a) => a.Name), ['📄 résumé.pdf', 'été.pdf', 'отчёт № 1.pdf', '日本語ファイル.pdf', 'Grüße.pdf', 'naïve long.pdf']);
});

test('a part with disposition inline and no name is not an attachment; with a name it is', () => {
  const m = mixed(
    ['Content-Type: image/png', 'Content-Disposition: inline', 'Content-Transfer-Encoding: base64', '', 'iVBORw0KGgo='],
    ['Content-Type: image/png', 'Content-Disposition: inline; filename="logo.png"', 'Content-Transfer-Encoding: base64', '', 'iVBORw0KGgo='],
  );
  const r = analyse(m);
  assert.deepEqual(r.attachments, [{ MIMESection: 3, Name: 'logo.png', MIMEType: 'image/png', Size: 8, Type: 'MIME' }]);
});

// ---- uuencode ----------------------------------------------------------------------------------

test('UUE: uuencoded files in a message without MIME, with names and decoded sizes', () => {
  const one = pseudoRandom(100, 1);
  const two = pseudoRandom(45 * 3, 2); // full lines only
  const m = crlf('From: a@example.org', 'Subject: files', '', 'Here they are:', '', ...uuencode('one.exe', one), '', 'and', ...uuencode('two words.zip', two, '0600'), 'bye');
  const r = analyse(m);
  assert.deepEqual(r.attachments, [
    { MIMESection: 1, Name: 'one.exe', MIMEType: 'application/octet-stream', Size: 100, Type: 'UUE' },
    { MIMESection: 1, Name: 'two words.zip', MIMEType: 'application/zip', Size: 135, Type: 'UUE' },
  ]);
  assert.deepEqual(r.defects, []);
});

test('UUE: an empty file, and "begin" lines that are just text', () => {
  const m = crlf(
    '',
    'begin 644 empty.txt',
    '`',
    'end',
    'begin 600 and then the meeting went on',
    'We talked about plans.',
    'begin 644 x.txt',
    '',
  );
  const r = analyse(m);
  assert.deepEqual(r.attachments, [{ MIMESection: 1, Name: 'empty.txt', MIMEType: 'text/plain', Size: 0, Type: 'UUE' }]);
});

test('UUE: an unterminated block is listed with the data found, and noted', () => {
  const lines = uuencode('cut.bin', pseudoRandom(200, 4));
  const m = crlf('Subject: x', '', ...lines.slice(0, 3));
  const r = analyse(m);
  assert.deepEqual(r.attachments, [{ MIMESection: 1, Name: 'cut.bin', MIMEType: 'application/octet-stream', Size: 90, Type: 'UUE' }]);
  assert.ok(r.defects.includes('uue-unterminated'));
});

test('UUE inside text parts encoded as quoted-printable and as base64', () => {
  const data = pseudoRandom(300, 9);
  const uu = crlf('text before', ...uuencode('inner.dat', data), 'text after');
  const qp = uu.replace(/=/g, '=3D');
  const m = mixed(
    ['Content-Type: text/plain', 'Content-Transfer-Encoding: quoted-printable', '', qp.slice(0, -2)],
    ['Content-Type: text/plain', 'Content-Transfer-Encoding: base64', '', ...base64Lines(Buffer.from(uu))],
  );
  const r = analyse(m);
  assert.deepEqual(r.attachments, [
    { MIMESection: 2, Name: 'inner.dat', MIMEType: 'application/octet-stream', Size: 300, Type: 'UUE' },
    { MIMESection: 3, Name: 'inner.dat', MIMEType: 'application/octet-stream', Size: 300, Type: 'UUE' },
  ]);
});

test('MIMEUUE: parts declared x-uuencode list the file inside them, not themselves', () => {
  const data = pseudoRandom(500, 5);
  const m = mixed(
    ['Content-Type: text/plain', '', 'see attachment'],
    ['Content-Type: application/octet-stream; name="setup.exe"', 'Content-Transfer-Encoding: x-uuencode', 'Content-Disposition: attachment; filename="setup.exe"', '', ...uuencode('setup.exe', data)],
    ['Content-Type: application/x-uuencode; name="b.uue"', '', ...uuencode('photo.jpg', pseudoRandom(50, 6))],
  );
  const r = analyse(m);
  assert.deepEqual(r.attachments, [
    { MIMESection: 3, Name: 'setup.exe', MIMEType: 'application/octet-stream', Size: 500, Type: 'MIMEUUE' },
    { MIMESection: 4, Name: 'photo.jpg', MIMEType: 'image/jpeg', Size: 50, Type: 'MIMEUUE' },
  ]);
});

test('MIMEUUE: a declared uuencoded part with nothing decodable is listed as MIME', () => {
  const m = mixed(['Content-Type: application/octet-stream; name="junk.uu"', 'Content-Transfer-Encoding: x-uuencode', '', 'not uuencoded at all']);
  const r = analyse(m);
  assert.deepEqual(r.attachments, [{ MIMESection: 2, Name: 'junk.uu', MIMEType: 'application/octet-stream', Size: 20, Type: 'MIME' }]);
});

// ---- BinHex ------------------------------------------------------------------------------------

test('BINHEX: a BinHex 4.0 file in text: name (Mac Roman) and data fork size from its header', () => {
  const data = Buffer.concat([Buffer.alloc(300, 0x41), Buffer.from([0x90, 0x90, 0x90, 0]), pseudoRandom(700, 8)]);
  const m = crlf('Subject: mac file', '', 'Here:', ...binhex('Caf\x8e menu.txt', data, Buffer.from('rsrc fork')), 'thanks');
  const r = analyse(m);
  assert.deepEqual(r.attachments, [{ MIMESection: 1, Name: 'Café menu.txt', MIMEType: 'text/plain', Size: data.length, Type: 'BINHEX' }]);
  assert.deepEqual(r.defects, []);
});

test('BINHEX: output of macutils binhex(1) is read (marker "(This file must be converted; you knew that already.)")', () => {
  // `binhex Read_Me.txt` (macutils 2.0b3) on a 521-byte data fork with an 8-byte resource fork
  const hqx = [
    '(This file must be converted; you knew that already.)',
    '',
    ':#e*PB@3J6@8ZG(Kd!&4&@&4dG(Kd!!!!!!)*!!!!#-fpBC!+`T!!`T!!`T!!D\'9',
    'XE\'pM!dG*br0$"!p2!3U$LXY2YrHNJVY4BGB96D(4qqH8Bp"6hClB4C[DTCp@NCA',
    'U\'@$KGU($J(p$9l3Y3R5JUA`&4S"@(24"DH,-rZNqDeG1"SQfK@VCce3He[9JkN"',
    'lJ*M@UDd`!iZP6MU%i$\'h#FJ&M$D9JS%M*8Ar%hVEbBVEa,NHA*e5Kle*9CH&#T*',
    'BlEb[hDTZ!9rjNa`r$E(QZ`!8KD)Vaee,`@(4ljmS8i$pdLAT89Q1GIApP5QPje*',
    'dqEQHVE5PLeLik)#ChMXbAM-@eZ`f1&r5f6Q"p[8C\'NR8Cr8"B$K!9E2UpQUqRM5',
    'Ec63\'6#i2+acRkqL[E0`RpBl5MjCfea-&Q&bfRk)l"VZe%$1j"J2laHLkMh!q6eQ',
    'ZiaZ[Q"i5Cq#%,KlC,CI9Pb0,3)E1RqTFIRGrR[NZ*"Sd,2X*FCBi-1h*aBNE3@$',
    'RZ@YHhGHdYTZK26+Vc)D*aXR4hJ&cpMN$*4#6pVR%CdRfV[+j4AKUmXYmDLmcGGl',
    'J&Z**QMMHp1),6caPbBK46JN"L+B&4D"[YR@Cd@)S,FrGY3DXkpcAEq0r+IMZXAb',
    '4&UqNEZEc\'$*R`MjpM,88U1Lcp@l&B@P*SR%-)+JNqD(mY3p!C-iZ-$%YRei"*,2',
    '8q\'$+L\'i"*kdjLE$jFb#\'IG8mP4UQ6qPKFQ9cEh9bBf8SE!:',
  ];
  const r = analyse(crlf('Subject: x', '', ...hqx));
  assert.deepEqual(r.attachments, [{ MIMESection: 1, Name: 'Read Me.txt', MIMEType: 'text/plain', Size: 521, Type: 'BINHEX' }]);
  assert.deepEqual(r.defects, []);
});

test('MIMEBINHEX: application/mac-binhex40 parts, plain and base64-encoded, with or without the marker line', () => {
  const a = pseudoRandom(2000, 11);
  const b = pseudoRandom(10, 12);
  const m = mixed(
    ['Content-Type: application/mac-binhex40; name="a.hqx"', 'Content-Disposition: attachment; filename="a.hqx"', '', ...binhex('Budget.xls', a)],
    ['Content-Type: application/mac-binhex40', 'Content-Transfer-Encoding: base64', '', ...base64Lines(Buffer.from(crlf(...binhex('Icon.gif', b, Buffer.alloc(0), false))))],
  );
  const r = analyse(m);
  assert.deepEqual(r.attachments, [
    { MIMESection: 2, Name: 'Budget.xls', MIMEType: 'application/vnd.ms-excel', Size: 2000, Type: 'MIMEBINHEX' },
    { MIMESection: 3, Name: 'Icon.gif', MIMEType: 'image/gif', Size: 10, Type: 'MIMEBINHEX' },
  ]);
});

test('BinHex with a damaged header CRC is still listed, and noted; a cut one is noted only', () => {
  const lines = binhex('x.txt', Buffer.from('hello'));
  // flip one character of the name in the encoded data: the header CRC no longer matches
  const damaged = lines.slice();
  damaged[2] = damaged[2].slice(0, 3) + (damaged[2][3] === 'A' ? 'B' : 'A') + damaged[2].slice(4);
  const r = analyse(crlf('', ...damaged));
  assert.equal(r.attachments.length, 1);
  assert.equal(r.attachments[0].Type, 'BINHEX');
  assert.ok(r.defects.includes('binhex-crc'), r.defects.join());
  const cut = analyse(crlf('', lines[0], lines[1], lines[2].slice(0, 8)));
  assert.deepEqual(cut.attachments, []);
  assert.ok(cut.defects.includes('binhex-truncated'), cut.defects.join());
});

// ---- TNEF ----------------------------------------------------------------------------------------

test('TNEF: the files inside winmail.dat, with long names from the MAPI properties, and winmail.dat itself', () => {
  const pdf = pseudoRandom(3000, 21);
  const winmail = tnef([
    { title: 'REPORT~1.PDF', data: pdf, longName: 'Quarterly report \u2713.pdf' },
    { title: 'notes.txt', data: Buffer.from('hello notes') },
    { title: 'r\u00e9sum\u00e9.doc', data: Buffer.alloc(0) },
  ]);
  const m = mixed(
    ['Content-Type: text/plain', '', 'see attached'],
    ['Content-Type: application/ms-tnef; name="winmail.dat"', 'Content-Transfer-Encoding: base64', 'Content-Disposition: attachment; filename="winmail.dat"', '', ...base64Lines(winmail)],
  );
  const r = analyse(m);
  assert.deepEqual(r.attachments, [
    { MIMESection: 3, Name: 'winmail.dat', MIMEType: 'application/ms-tnef', Size: winmail.length, Type: 'MIME' },
    { MIMESection: 3, Name: 'Quarterly report \u2713.pdf', MIMEType: 'application/pdf', Size: 3000, Type: 'TNEF' },
    { MIMESection: 3, Name: 'notes.txt', MIMEType: 'text/plain', Size: 11, Type: 'TNEF' },
    { MIMESection: 3, Name: 'r\u00e9sum\u00e9.doc', MIMEType: 'application/msword', Size: 0, Type: 'TNEF' },
  ]);
  assert.deepEqual(r.defects, []);
});

test('TNEF: recognised by the name winmail.dat too, and the code page decides how titles are read', () => {
  const winmail = tnef([{ title: '\u00c4\u00d6.txt', data: Buffer.from('x') }], 1251);
  const m = mixed(['Content-Type: application/octet-stream; name="WINMAIL.DAT"', 'Content-Transfer-Encoding: base64', '', ...base64Lines(winmail)]);
  const r = analyse(m);
  // bytes C4 D6 read as Windows-1251
  assert.deepEqual(r.attachments.map((a) => [a.Name, a.Size, a.Type]), [['WINMAIL.DAT', winmail.length, 'MIME'], ['\u0414\u0426.txt', 1, 'TNEF']]);
});

test('TNEF: bad checksums are noted, a cut stream lists what it holds, a stream that is not TNEF lists nothing', () => {
  const bad = tnef([{ title: 'a.txt', data: Buffer.from('abc'), badChecksum: true }, { title: 'b.txt', data: Buffer.from('defg') }]);
  let r = analyse(mixed(['Content-Type: application/ms-tnef', 'Content-Transfer-Encoding: base64', '', ...base64Lines(bad)]));
  assert.deepEqual(r.attachments.map((a) => [a.Name, a.Size, a.Type]), [['a.txt', 3, 'TNEF'], ['b.txt', 4, 'TNEF']]);
  assert.ok(r.defects.includes('tnef-checksum'));

  const full = tnef([{ title: 'big.bin', data: pseudoRandom(5000, 1) }]);
  const cut = full.subarray(0, full.length - 3000 - 2);
  r = analyse(mixed(['Content-Type: application/ms-tnef', 'Content-Transfer-Encoding: base64', '', ...base64Lines(cut)]));
  assert.deepEqual(r.attachments.map((a) => [a.Name, a.Size, a.Type]), [['big.bin', 2000, 'TNEF']]);
  assert.ok(r.defects.includes('tnef-truncated'));

  r = analyse(mixed(['Content-Type: application/ms-tnef; name="winmail.dat"', 'Content-Transfer-Encoding: base64', '', ...base64Lines(pseudoRandom(100, 2))]));
  assert.deepEqual(r.attachments.map((a) => a.Type), ['MIME']);
  assert.ok(r.defects.includes('tnef-invalid'));
});

test('TNEF: attribute data is never kept, only counted (a 3 MB file inside, a small cap for names)', () => {
  const big = pseudoRandom(3 * 1024 * 1024, 3);
  const winmail = tnef([{ title: 'BIG.BIN', data: big, longName: 'big file.bin' }]);
  const m = Buffer.concat([Buffer.from(crlf('Content-Type: application/ms-tnef', '')), winmail]);
  const r = analyse(m, { maxTnefAttributeBytes: 1024 });
  assert.deepEqual(r.attachments, [{ MIMESection: 1, Name: 'big file.bin', MIMEType: 'application/octet-stream', Size: big.length, Type: 'TNEF' }]);
  assert.equal(slice(m, r.structure[0]).length > 0, true);
});

// ---- ordering and nesting -----------------------------------------------------------------------

test('attachments in an attached message are found too, with their own section', () => {
  const inner = crlf(
    'Subject: inner',
    'Content-Type: multipart/mixed; boundary=in',
    '',
    '--in',
    'Content-Type: text/plain',
    '',
    ...uuencode('deep.txt', Buffer.from('deep')),
    '--in',
    'Content-Type: image/gif; name="pic.gif"',
    'Content-Transfer-Encoding: base64',
    '',
    'R0lGODlh',
    '--in--',
  );
  const m = mixed(['Content-Type: message/rfc822', '', inner.slice(0, -2)]);
  const r = analyse(m);
  assert.deepEqual(shape(r), ['TEXT multipart/mixed', '1 message/rfc822', '1.TEXT multipart/mixed', '1.1 text/plain', '1.2 image/gif']);
  assert.deepEqual(r.attachments, [
    { MIMESection: 4, Name: 'deep.txt', MIMEType: 'text/plain', Size: 4, Type: 'UUE' },
    { MIMESection: 5, Name: 'pic.gif', MIMEType: 'image/gif', Size: 6, Type: 'MIME' },
  ]);
});

test('maxAttachments caps the table', () => {
  const parts: string[][] = [];
  for (let i = 0; i < 20; i++) parts.push([`Content-Type: application/octet-stream; name="f${i}.bin"`, '', 'x']);
  const r = analyse(mixed(...parts), { maxAttachments: 5 });
  assert.equal(r.attachments.length, 5);
  assert.equal(r.truncated, true);
  assert.ok(r.defects.includes('too-many-attachments'));
});
