import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DotStuffer } from '../../src/delivery/dot-stream.js';
import { ReplyParser, ReplyFormatError, applyReplyHook, makeReply, replyFromText } from '../../src/delivery/client-reply.js';
import { encodeOrcpt, encodeXtext, localRefusal, mailCommand, parseExtensions, rcptCommand } from '../../src/delivery/client-params.js';

function stuff(input: string, splits: number[] = []): string {
  const d = new DotStuffer();
  const bytes = Buffer.from(input, 'latin1');
  const parts: Buffer[] = [];
  let at = 0;
  for (const s of [...splits, bytes.length]) {
    parts.push(d.push(bytes.subarray(at, s)));
    at = s;
  }
  parts.push(d.end());
  return Buffer.concat(parts).toString('latin1');
}

test('dot-stuffing and CRLF normalisation', () => {
  assert.equal(stuff(''), '.\r\n');
  assert.equal(stuff('a\r\n'), 'a\r\n.\r\n');
  assert.equal(stuff('a'), 'a\r\n.\r\n');
  assert.equal(stuff('.a\r\n..b\r\n.\r\n'), '..a\r\n...b\r\n..\r\n.\r\n');
  assert.equal(stuff('x\n.y\nz'), 'x\r\n..y\r\nz\r\n.\r\n');
  assert.equal(stuff('bare\rcr\r\n'), 'bare\r\ncr\r\n.\r\n');
  assert.equal(stuff('a.b\r\n. \r\n'), 'a.b\r\n.. \r\n.\r\n');
  assert.equal(stuff('end\r'), 'end\r\n.\r\n');
});

test('dot-stuffing gives the same bytes for every chunk split', () => {
  const input = '.start\r\nmid\r\n.\r\n\r\n..two\nlf\r\rcr.\r\n.';
  const whole = stuff(input);
  for (let i = 0; i <= input.length; i++) {
    for (let j = i; j <= input.length; j++) assert.equal(stuff(input, [i, j]), whole, `split at ${i},${j}`);
  }
});

test('reply parser: multi-line replies, split reads, LF only, garbage', () => {
  const p = new ReplyParser();
  assert.deepEqual(p.push(Buffer.from('250-first\r\n250-sec')), []);
  const [r] = p.push(Buffer.from('ond\r\n250 last\r\n'));
  assert.equal(r.code, 250);
  assert.equal(r.full, '250-first\r\n250-second\r\n250 last');
  assert.equal(r.last, '250 last');
  const two = p.push(Buffer.from('550 5.1.1 No such user\n354\r\n'));
  assert.deepEqual(two.map((x) => [x.code, x.enhanced, x.last]), [[550, '5.1.1', '550 5.1.1 No such user'], [354, undefined, '354']]);
  assert.throws(() => new ReplyParser().push(Buffer.from('hello\r\n')), ReplyFormatError);
  assert.throws(() => new ReplyParser().push(Buffer.from('250-a\r\n251 b\r\n')), ReplyFormatError);
  assert.throws(() => new ReplyParser().push(Buffer.alloc(9000, 0x41)), ReplyFormatError);
});

test('replacement replies from the hook', async () => {
  const r = replyFromText('550 5.1.1 gone\nsecond line\r\n');
  assert.deepEqual(r?.lines, ['550-5.1.1 gone', '550 second line']);
  assert.equal(r?.enhanced, '5.1.1');
  assert.equal(replyFromText('no code'), null);
  assert.equal(replyFromText('1234 x'), null);
  const orig = makeReply(['450 4.1.1 try later']);
  assert.equal(await applyReplyHook(() => undefined, 'RCPT TO:<a@b>', orig), orig);
  assert.equal(await applyReplyHook(() => 'junk', 'RCPT TO:<a@b>', orig), orig);
  const seen: string[] = [];
  const replaced = await applyReplyHook(
    async (cmd, full, last) => {
      seen.push(cmd, full, last);
      return '550 5.1.1 no such user';
    },
    'RCPT TO:<a@b>',
    orig,
  );
  assert.deepEqual(seen, ['RCPT TO:<a@b>', '450 4.1.1 try later', '450 4.1.1 try later']);
  assert.equal(replaced.code, 550);
  assert.equal(replaced.original, orig);
});

test('xtext, ORCPT and EHLO keywords', () => {
  assert.equal(encodeXtext('a+b=c d'), 'a+2Bb+3Dc+20d');
  assert.equal(encodeXtext('é'), '+E9');
  assert.equal(encodeXtext('日'), '+E6+97+A5');
  assert.equal(encodeOrcpt('rfc822;a+b@example.com'), 'rfc822;a+2Bb@example.com');
  assert.equal(encodeOrcpt('x@example.com'), 'rfc822;x@example.com');
  const ext = parseExtensions(makeReply(['250-mx Hello', '250-SIZE 1000', '250-AUTH PLAIN', '250-AUTH=LOGIN', '250-pipelining', '250 DSN']));
  assert.deepEqual([...ext], [['SIZE', '1000'], ['AUTH', 'PLAIN LOGIN'], ['PIPELINING', ''], ['DSN', '']]);
});

test('MAIL/RCPT parameters only when offered', () => {
  const tx = { from: 'a@x', recipients: [{ address: 'b@y', notify: ['success', 'failure'], orcpt: 'rfc822;b@y' }], size: 42, body: '8BITMIME' as const, ret: 'HDRS' as const, envid: 'id 1' };
  const all = new Map([['SIZE', ''], ['8BITMIME', ''], ['DSN', ''], ['SMTPUTF8', '']]);
  assert.equal(mailCommand(tx, all), 'MAIL FROM:<a@x> SIZE=42 BODY=8BITMIME RET=HDRS ENVID=id+201');
  assert.equal(rcptCommand(tx.recipients[0], all), 'RCPT TO:<b@y> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@y');
  const none = new Map([['8BITMIME', '']]);
  assert.equal(mailCommand(tx, none), 'MAIL FROM:<a@x> BODY=8BITMIME');
  assert.equal(rcptCommand(tx.recipients[0], none), 'RCPT TO:<b@y>');
  assert.equal(mailCommand({ ...tx, from: '', body: undefined }, new Map()), 'MAIL FROM:<>');
});

test('local refusals', () => {
  const base = { from: 'a@x', recipients: [{ address: 'b@y' }], size: 100 };
  assert.equal(localRefusal(base, new Map(), 'h'), null);
  assert.match(localRefusal({ ...base, body: '8BITMIME' }, new Map(), 'h')!.reply, /^554 5\.6\.3 .*8BITMIME/);
  assert.equal(localRefusal({ ...base, body: '8BITMIME' }, new Map([['8BITMIME', '']]), 'h'), null);
  assert.match(localRefusal({ ...base, body: 'BINARYMIME' }, new Map([['8BITMIME', '']]), 'h')!.reply, /^554 5\.6\.3 /);
  assert.match(localRefusal({ ...base, recipients: [{ address: 'ü@y' }] }, new Map(), 'h')!.reply, /^553 5\.6\.7 /);
  assert.match(localRefusal({ ...base, smtputf8: true }, new Map(), 'h')!.reply, /^554 5\.6\.9 /);
  assert.equal(localRefusal({ ...base, smtputf8: true }, new Map([['SMTPUTF8', '']]), 'h'), null);
  assert.match(localRefusal(base, new Map([['SIZE', '99']]), 'h')!.reply, /^552 5\.3\.4 /);
  assert.equal(localRefusal(base, new Map([['SIZE', '0']]), 'h'), null);
  assert.match(localRefusal({ ...base, recipients: [{ address: 'b@y>\r\nRSET' }] }, new Map(), 'h')!.reply, /^501 5\.1\.3 /);
  assert.match(localRefusal({ ...base, from: 'a@x> SIZE=1' }, new Map(), 'h')!.reply, /^501 5\.1\.7 /);
});
