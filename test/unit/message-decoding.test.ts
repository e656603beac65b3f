import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LineSplitter } from '../../src/message/line-splitter.js';
import { Base64Decoder, QuotedPrintableDecoder, IdentityDecoder, type TransferDecoder } from '../../src/message/transfer-decoding.js';
import { BinHexDecoder, crc16xmodem } from '../../src/message/attachments/binhex.js';
import { uuLineLength, uuBeginName } from '../../src/message/attachments/uuencode.js';
import { TnefParser } from '../../src/message/attachments/tnef.js';
import type { FoundFile } from '../../src/message/attachments/found.js';
import { binhex, pseudoRandom, tnef, uuencode } from './message-corpus.js';

interface L {
  text: string;
  offset: number;
  eol: number;
  cont: boolean;
  partial: boolean;
}

function split(input: Buffer, max: number, chunk: number): L[] {
  const out: L[] = [];
  const s = new LineSplitter(max, (d, offset, eol, cont, partial) => {
    out.push({ text: d.toString('latin1'), offset, eol, cont, partial });
  });
  for (let i = 0; i < input.length; i += chunk) s.write(input.subarray(i, i + chunk));
  s.end();
  return out;
}

test('line splitter: offsets and terminators, for every chunk size', () => {
  const input = Buffer.from('ab\r\n\r\nc\nlast');
  const expected: L[] = [
    { text: 'ab', offset: 0, eol: 2, cont: false, partial: false },
    { text: '', offset: 4, eol: 2, cont: false, partial: false },
    { text: 'c', offset: 6, eol: 1, cont: false, partial: false },
    { text: 'last', offset: 8, eol: 0, cont: false, partial: false },
  ];
  for (let chunk = 1; chunk <= input.length; chunk++) assert.deepEqual(split(input, 100, chunk), expected, `chunk ${chunk}`);
});

test('line splitter: long lines come in pieces, a CR is never cut from its LF', () => {
  const input = Buffer.from('abcdefghij\r\nxy\r\n');
  for (let chunk = 1; chunk <= input.length; chunk++) {
    const lines = split(input, 4, chunk);
    assert.deepEqual(lines, [
      { text: 'abcd', offset: 0, eol: 0, cont: false, partial: true },
      { text: 'efgh', offset: 4, eol: 0, cont: true, partial: true },
      { text: 'ij', offset: 8, eol: 2, cont: true, partial: false },
      { text: 'xy', offset: 12, eol: 2, cont: false, partial: false },
    ], `chunk ${chunk}`);
  }
  // the CR falls at the end of a piece: it stays with the LF
  const cr = split(Buffer.from('abc\r\nd'), 4, 1);
  assert.deepEqual(cr.map((l) => [l.text, l.eol]), [['abc', 2], ['d', 0]]);
  const cr2 = split(Buffer.from('abcd\r\n'), 4, 1);
  assert.deepEqual(cr2.map((l) => [l.text, l.offset, l.eol, l.partial]), [['abcd', 0, 2, false]]);
  const cr3 = split(Buffer.from('abcde\r\n'), 4, 2);
  assert.deepEqual(cr3.map((l) => [l.text, l.offset, l.eol]), [['abcd', 0, 0], ['e', 4, 2]]);
});

function decode(d: TransferDecoder & { write(b: Uint8Array): void }, input: string, chunk: number, out: Buffer[]): void {
  const b = Buffer.from(input, 'latin1');
  for (let i = 0; i < b.length; i += chunk) d.write(b.subarray(i, i + chunk));
  d.end();
  void out;
}

test('base64 decoder: any chunking, whitespace, padding in the middle, junk', () => {
  const data = pseudoRandom(1000, 5);
  const text = data.toString('base64').replace(/.{76}/g, '$&\r\n');
  for (const chunk of [1, 3, 4, 5, 77, 5000]) {
    const out: Buffer[] = [];
    const d = new Base64Decoder((b) => out.push(Buffer.from(b)));
    decode(d, text, chunk, out);
    assert.deepEqual(Buffer.concat(out), data, `chunk ${chunk}`);
    assert.equal(d.size, 1000);
    assert.equal(d.invalid, false);
    const count = new Base64Decoder();
    decode(count, text, chunk, []);
    assert.equal(count.size, 1000);
  }
  const out: Buffer[] = [];
  const d = new Base64Decoder((b) => out.push(Buffer.from(b)));
  decode(d, 'QQ==QUI=', 1, out);
  assert.equal(Buffer.concat(out).toString(), 'AAB');
  const junk = new Base64Decoder();
  decode(junk, 'QU*JD', 2, []);
  assert.equal(junk.size, 3);
  assert.equal(junk.invalid, true);
  const cut = new Base64Decoder();
  decode(cut, 'QUJDR', 2, []);
  assert.equal(cut.size, 3);
  assert.equal(cut.invalid, true);
});

test('quoted-printable decoder: escapes, soft breaks (CRLF and LF), malformed escapes kept', () => {
  const cases: [string, string, boolean][] = [
    ['caf=C3=A9=\r\n au lait=\nok', 'café au laitok', false],
    ['a=3d=3Db', 'a==b', false],
    ['a=ZZb', 'a=ZZb', true],
    ['a=4', 'a=4', true],
    ['end=', 'end=', true],
    ['bare=\rcr', 'barecr', true],
  ];
  for (const [input, expected, invalid] of cases) {
    for (const chunk of [1, 2, 100]) {
      const out: Buffer[] = [];
      const d = new QuotedPrintableDecoder((b) => out.push(Buffer.from(b)));
      decode(d, input, chunk, out);
      assert.equal(Buffer.concat(out).toString('utf8'), expected, `${JSON.stringify(input)} chunk ${chunk}`);
      assert.equal(d.size, Buffer.byteLength(expected));
      assert.equal(d.invalid, invalid, input);
    }
  }
  const id = new IdentityDecoder();
  id.write(Buffer.from('abc'));
  id.end();
  assert.equal(id.size, 3);
});

test('uuencode lines: length character and line length checked', () => {
  const lines = uuencode('f.bin', pseudoRandom(100, 1));
  assert.equal(uuBeginName(Buffer.from(lines[0])), 'f.bin');
  assert.equal(uuLineLength(Buffer.from(lines[1])), 45);
  assert.equal(uuLineLength(Buffer.from(lines[3])), 10);
  assert.equal(uuLineLength(Buffer.from('`')), 0);
  assert.equal(uuLineLength(Buffer.from('M' + 'a'.repeat(60))), -1); // lower case is not uuencode
  assert.equal(uuLineLength(Buffer.from('M' + 'A'.repeat(10))), -1); // too short for 45 bytes
  assert.equal(uuBeginName(Buffer.from('begin 644 ')), null);
  assert.equal(uuBeginName(Buffer.from('begin 999 x')), null);
  assert.equal(uuBeginName(Buffer.from('begin 0755 my file.tar.gz  ')), 'my file.tar.gz');
  assert.equal(uuBeginName(Buffer.from('begin 644 r\u00e9sum\u00e9.txt')), 'résumé.txt');
});

test('BinHex decoder: header from any chunking; CRC-16/XMODEM check value', () => {
  assert.equal(crc16xmodem(Buffer.from('123456789')), 0x31c3);
  const lines = binhex('Name With Spaces', pseudoRandom(100, 1), Buffer.from('res'));
  const chars = Buffer.from(lines.slice(2).join('\n').slice(1), 'latin1'); // after the ':'
  for (const chunk of [1, 5, 1000]) {
    const d = new BinHexDecoder();
    for (let i = 0; i < chars.length && !d.done; i += chunk) d.write(chars.subarray(i, i + chunk));
    assert.deepEqual(d.header, { name: 'Name With Spaces', dataLength: 100, resourceLength: 3, crcOk: true });
  }
});

test('TNEF parser: byte-by-byte input, attachments in order, no attachment without name or data', () => {
  const stream = tnef([{ title: 'a.txt', data: Buffer.from('aaa') }, { longName: 'Long Name.docx' }, { data: Buffer.from('x') }, {}]);
  for (const chunk of [1, 9, stream.length]) {
    const found: FoundFile[] = [];
    const defects: string[] = [];
    const p = new TnefParser({ onFound: (f) => found.push(f), onDefect: (c) => defects.push(c), maxAttributeBytes: 1 << 20 });
    for (let i = 0; i < stream.length; i += chunk) p.write(stream.subarray(i, i + chunk));
    p.end();
    assert.deepEqual(found, [
      { kind: 'tnef', name: 'a.txt', size: 3 },
      { kind: 'tnef', name: 'Long Name.docx', size: 0 },
      { kind: 'tnef', name: '', size: 1 },
    ]);
    assert.deepEqual(defects, []);
  }
});

test('TNEF parser: a bad attribute level stops the stream; MAPI properties cut by the cap', () => {
  const stream = tnef([{ title: 'a.txt', data: Buffer.from('aaa'), longName: 'a long name.txt' }]);
  const found: FoundFile[] = [];
  const defects: string[] = [];
  const p = new TnefParser({ onFound: (f) => found.push(f), onDefect: (c) => defects.push(c), maxAttributeBytes: 40 });
  p.write(stream);
  p.write(Buffer.from([9, 0, 0, 0, 0, 0, 0, 0, 0]));
  p.end();
  // the long name is past the 40 bytes kept: the title is used
  assert.deepEqual(found, [{ kind: 'tnef', name: 'a.txt', size: 3 }]);
  assert.deepEqual(defects, ['tnef-props-truncated', 'tnef-invalid']);
});

test('line splitter: random input, pieces and chunkings; the pieces put back give the input', () => {
  let seed = 99;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const alphabet = [0x61, 0x62, 13, 10, 13, 10, 0x20];
  for (let round = 0; round < 300; round++) {
    const input = Buffer.from(Array.from({ length: rnd(200) }, () => alphabet[rnd(alphabet.length)]));
    const maxLine = 1 + rnd(12);
    const pieces: Buffer[] = [];
    let next = 0;
    const s = new LineSplitter(maxLine, (d, offset, eol, cont, partial) => {
      assert.equal(offset, next, 'pieces are contiguous');
      assert.ok(d.length <= maxLine, `piece of ${d.length} > ${maxLine}`);
      assert.ok(!(partial && eol), 'a partial piece has no terminator');
      const term = eol === 2 ? '\r\n' : eol === 1 ? '\n' : '';
      const whole = Buffer.concat([d, Buffer.from(term)]);
      if (eol === 1) assert.notEqual(d[d.length - 1], 13, 'a CR before an LF is part of the terminator');
      void cont;
      pieces.push(whole);
      next += whole.length;
    });
    for (let i = 0; i < input.length; ) {
      const n = 1 + rnd(20);
      s.write(input.subarray(i, i + n));
      i += n;
    }
    s.end();
    assert.deepEqual(Buffer.concat(pieces), input);
  }
});
