import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatReply, parseReplyText, reply } from '../../src/smtp/reply.js';

/** Splits wire text into lines, checking every one ends in CRLF and nothing else breaks it. */
function wireLines(text: string): string[] {
  assert.ok(text.endsWith('\r\n'), 'ends with CRLF');
  const lines = text.slice(0, -2).split('\r\n');
  for (const l of lines) {
    assert.ok(!['\r', '\n', '\0'].some((c) => l.includes(c)), `no CR, LF or NUL inside ${JSON.stringify(l)}`);
    assert.ok(Buffer.byteLength(l) + 2 <= 512, `line of ${Buffer.byteLength(l) + 2} octets`);
  }
  return lines;
}

test('reply() defaults to one empty line', () => {
  assert.deepEqual(reply(250, '2.0.0'), { code: 250, enhanced: '2.0.0', lines: [''] });
  assert.deepEqual(reply(354, undefined, 'go'), { code: 354, enhanced: undefined, lines: ['go'] });
});

test('a single line with an enhanced code', () => {
  assert.equal(formatReply(reply(250, '2.1.0', 'Ok')), '250 2.1.0 Ok\r\n');
});

test('enhanced codes can be turned off', () => {
  assert.equal(formatReply(reply(250, '2.1.0', 'Ok'), false), '250 Ok\r\n');
  assert.equal(formatReply(reply(250, '2.1.0', 'a', 'b'), false), '250-a\r\n250 b\r\n');
});

test('multi-line: "-" on all lines but the last, the enhanced code on every line', () => {
  const text = formatReply(reply(250, '2.0.0', 'mx.example', 'PIPELINING', 'SIZE 100'));
  assert.equal(text, '250-2.0.0 mx.example\r\n250-2.0.0 PIPELINING\r\n250 2.0.0 SIZE 100\r\n');
});

test('multi-line without an enhanced code (EHLO style)', () => {
  assert.equal(formatReply(reply(250, undefined, 'mx.example', '8BITMIME')), '250-mx.example\r\n250 8BITMIME\r\n');
});

test('the enhanced class follows the reply code', () => {
  assert.equal(formatReply(reply(550, '2.1.5', 'no')), '550 5.1.5 no\r\n');
  assert.equal(formatReply(reply(421, '5.7.0', 'bye')), '421 4.7.0 bye\r\n');
  assert.equal(formatReply(reply(250, '5.0.0', 'ok', 'ok')), '250-2.0.0 ok\r\n250 2.0.0 ok\r\n');
});

test('3xx replies carry no enhanced code', () => {
  assert.equal(formatReply(reply(354, '2.0.0', 'End data with <CR><LF>.<CR><LF>')), '354 End data with <CR><LF>.<CR><LF>\r\n');
  assert.equal(formatReply(reply(334, '2.0.0', 'VXNlcm5hbWU6')), '334 VXNlcm5hbWU6\r\n');
});

test('an empty line: no trailing space', () => {
  assert.equal(formatReply(reply(334, undefined, '')), '334\r\n');
  assert.equal(formatReply(reply(250, '2.0.0', '')), '250 2.0.0\r\n');
  assert.equal(formatReply(reply(250, undefined, '', 'x')), '250-\r\n250 x\r\n');
  assert.equal(formatReply({ code: 250, lines: [] }), '250\r\n');
});

test('CR, LF and NUL in the text cannot end the reply or start another', () => {
  const evil = 'ok\r\n250 2.0.0 injected\rmore\nand\x00end';
  const text = formatReply(reply(550, '5.7.1', evil));
  const lines = wireLines(text);
  assert.equal(lines.length, 1);
  assert.equal(lines[0], '550 5.7.1 ok  250 2.0.0 injected more and end');
});

test('injection in a middle line of a multi-line reply', () => {
  const lines = wireLines(formatReply(reply(250, '2.0.0', 'a\r\n250 b', 'c')));
  assert.deepEqual(lines, ['250-2.0.0 a  250 b', '250 2.0.0 c']);
});

test('lines are cut to 512 octets with CRLF', () => {
  const long = 'x'.repeat(2000);
  const [line] = wireLines(formatReply(reply(550, '5.0.0', long)));
  assert.equal(Buffer.byteLength(line) + 2, 512);
  assert.equal(line, `550 5.0.0 ${'x'.repeat(500)}`);
  const [plain] = wireLines(formatReply(reply(550, undefined, long)));
  assert.equal(Buffer.byteLength(plain) + 2, 512);
  const [noEnh] = wireLines(formatReply(reply(550, '5.0.0', long), false));
  assert.equal(noEnh, `550 ${'x'.repeat(506)}`);
});

test('a line of exactly the limit is not cut', () => {
  const text = 'y'.repeat(500);
  assert.equal(formatReply(reply(250, '2.0.0', text)), `250 2.0.0 ${text}\r\n`);
});

test('cutting never splits a UTF-8 sequence', () => {
  for (const ch of ['é', '€', '🎉']) {
    for (let pad = 0; pad < 4; pad++) {
      const text = 'a'.repeat(pad) + ch.repeat(600);
      const [line] = wireLines(formatReply(reply(550, '5.0.0', text)));
      const body = line.slice('550 5.0.0 '.length);
      assert.ok(!body.includes('\ufffd'), `${ch} pad ${pad}: no broken character`);
      assert.ok(text.startsWith(body), `${ch} pad ${pad}: a prefix of the text`);
      assert.ok(Buffer.byteLength(line) + 2 > 512 - Buffer.byteLength(ch), `${ch} pad ${pad}: cut as late as possible`);
    }
  }
});

test('every line of a long multi-line reply is capped', () => {
  const lines = wireLines(formatReply(reply(250, '2.0.0', 'a'.repeat(600), 'ü'.repeat(600), 'short')));
  assert.equal(lines.length, 3);
  assert.ok(lines[0].startsWith('250-2.0.0 aaa'));
  assert.ok(lines[1].startsWith('250-2.0.0 üüü'));
  assert.equal(lines[2], '250 2.0.0 short');
});

// ---- parseReplyText -----------------------------------------------------------------------

test('parseReplyText: one line with an enhanced code', () => {
  assert.deepEqual(parseReplyText('550 5.7.1 Go away'), { code: 550, enhanced: '5.7.1', lines: ['Go away'] });
});

test('parseReplyText: one line without an enhanced code', () => {
  assert.deepEqual(parseReplyText('250 Fine'), { code: 250, enhanced: undefined, lines: ['Fine'] });
  assert.deepEqual(parseReplyText('421'), { code: 421, enhanced: undefined, lines: [''] });
  assert.deepEqual(parseReplyText('550 5.7.1'), { code: 550, enhanced: '5.7.1', lines: [''] });
});

test('parseReplyText: several lines separated by LF or CRLF', () => {
  const expected = { code: 250, enhanced: '2.0.0', lines: ['first', 'second', 'third'] };
  assert.deepEqual(parseReplyText('250-2.0.0 first\n250-2.0.0 second\n250 2.0.0 third'), expected);
  assert.deepEqual(parseReplyText('250-2.0.0 first\r\n250-2.0.0 second\r\n250 2.0.0 third\r\n'), expected);
  assert.deepEqual(parseReplyText('250 2.0.0 first\nsecond\r\nthird\n'), expected);
});

test('parseReplyText: lines without codes become continuation lines', () => {
  assert.deepEqual(parseReplyText('214 Commands:\nHELO EHLO\nQUIT'), { code: 214, enhanced: undefined, lines: ['Commands:', 'HELO EHLO', 'QUIT'] });
});

test('parseReplyText: a number that is not an enhanced code stays text', () => {
  assert.deepEqual(parseReplyText('250 2.5 percent'), { code: 250, enhanced: undefined, lines: ['2.5 percent'] });
  assert.deepEqual(parseReplyText('250 3.1.1 x'), { code: 250, enhanced: undefined, lines: ['3.1.1 x'] });
  assert.deepEqual(parseReplyText('250 2.1.0x'), { code: 250, enhanced: undefined, lines: ['2.1.0x'] });
});

test('parseReplyText: invalid codes give null', () => {
  for (const t of ['', 'OK', '25 ok', '2500 ok', '250ok', '199 x', '600 x', '099 x', ' 250 ok', '\n250 ok', 'abc\n250 ok']) {
    assert.equal(parseReplyText(t), null, JSON.stringify(t));
  }
});

test('parseReplyText then formatReply: a script reply round-trips to clean wire text', () => {
  const r = parseReplyText('550-5.7.1 Line one\n550 5.7.1 Line two');
  assert.ok(r);
  assert.equal(formatReply(r), '550-5.7.1 Line one\r\n550 5.7.1 Line two\r\n');
});
