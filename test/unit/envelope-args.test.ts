import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseEsmtpLine, type MailCommand, type RcptCommand } from '../../src/smtp/envelope-args.js';
import type { Reply } from '../../src/smtp/reply.js';

const all = { smtputf8: true, dsn: true };
const none = { smtputf8: false, dsn: false };

function mail(arg: string, opts = all): MailCommand {
  const r = parseEsmtpLine(arg, 'FROM', opts);
  assert.ok(!('error' in r), `expected MAIL ${arg} to pass: ${'error' in r ? r.error.lines.join(' ') : ''}`);
  return r as MailCommand;
}

function rcpt(arg: string, opts = all): RcptCommand {
  const r = parseEsmtpLine(arg, 'TO', opts);
  assert.ok(!('error' in r), `expected RCPT ${arg} to pass: ${'error' in r ? r.error.lines.join(' ') : ''}`);
  return r as RcptCommand;
}

function fail(arg: string, kind: 'FROM' | 'TO', opts = all): Reply {
  const r = parseEsmtpLine(arg, kind, opts);
  assert.ok('error' in r, `expected ${kind} ${arg} to be refused`);
  return r.error;
}

function assertReply(r: Reply, code: number, enhanced: string, text?: RegExp): void {
  assert.equal(r.code, code, r.lines.join(' '));
  assert.equal(r.enhanced, enhanced);
  if (text) assert.match(r.lines.join(' '), text);
}

// ---- MAIL ------------------------------------------------------------------------------------

test('MAIL: a plain return path', () => {
  const m = mail('FROM:<alice@example.com>');
  assert.deepEqual(m, { data: '<alice@example.com>', address: 'alice@example.com', params: {}, smtputf8: false });
});

test('MAIL: "from:" is case-insensitive and spaces around the path are allowed', () => {
  const m = mail('from: <a@example.com>  ');
  assert.equal(m.address, 'a@example.com');
  assert.equal(m.data, '<a@example.com>');
});

test('MAIL: the null sender', () => {
  const m = mail('FROM:<>');
  assert.equal(m.address, '');
  assert.equal(m.data, '<>');
});

test('MAIL: missing FROM: or bad path is 501 5.5.4', () => {
  assertReply(fail('<a@example.com>', 'FROM'), 501, '5.5.4', /missing FROM:/);
  assertReply(fail('TO:<a@example.com>', 'FROM'), 501, '5.5.4');
  assertReply(fail('FROM:<a@example.com', 'FROM'), 501, '5.5.4', /closing ">"/);
  assertReply(fail('FROM:<a b@example.com>', 'FROM'), 501, '5.5.4', /bad address syntax/);
  assertReply(fail('FROM:<a@example.com>X', 'FROM'), 501, '5.5.4');
  assertReply(fail('FROM:', 'FROM'), 501, '5.5.4');
});

test('MAIL: SIZE', () => {
  assert.equal(mail('FROM:<a@example.com> SIZE=1048576').size, 1048576);
  assert.equal(mail('FROM:<a@example.com> size=0').size, 0);
  for (const v of ['', 'abc', '-1', '1.5', '1e6', '1'.repeat(21)]) {
    assertReply(fail(`FROM:<a@example.com> SIZE=${v}`, 'FROM'), 501, '5.5.4', /SIZE/);
  }
  assertReply(fail('FROM:<a@example.com> SIZE', 'FROM'), 501, '5.5.4');
});

test('MAIL: BODY', () => {
  assert.equal(mail('FROM:<a@example.com> BODY=7BIT').body, '7BIT');
  assert.equal(mail('FROM:<a@example.com> body=8bitmime').body, '8BITMIME');
  assertReply(fail('FROM:<a@example.com> BODY=BINARYMIME', 'FROM'), 555, '5.5.4', /BODY/);
  assertReply(fail('FROM:<a@example.com> BODY', 'FROM'), 555, '5.5.4');
});

test('MAIL: SMTPUTF8 when offered, with a UTF-8 address', () => {
  const m = mail('FROM:<jöe@bücher.example> SMTPUTF8');
  assert.equal(m.smtputf8, true);
  assert.equal(m.address, 'jöe@bücher.example');
  assert.equal(mail('FROM:<a@example.com> smtputf8').smtputf8, true);
});

test('MAIL: SMTPUTF8 refused when not offered or given a value', () => {
  assertReply(fail('FROM:<a@example.com> SMTPUTF8', 'FROM', none), 555, '5.5.4');
  assertReply(fail('FROM:<a@example.com> SMTPUTF8=yes', 'FROM'), 555, '5.5.4');
});

test('MAIL: a non-ASCII address without SMTPUTF8 is 553 5.6.7', () => {
  assertReply(fail('FROM:<jöe@example.com>', 'FROM'), 553, '5.6.7', /SMTPUTF8/);
  assertReply(fail('FROM:<joe@bücher.example>', 'FROM'), 553, '5.6.7');
  assertReply(fail('FROM:<"jö e"@example.com>', 'FROM'), 553, '5.6.7');
  // SMTPUTF8 on the line but not offered by the server does not unlock UTF-8.
  assertReply(fail('FROM:<jöe@example.com> SMTPUTF8', 'FROM', none), 553, '5.6.7');
  // The word SMTPUTF8 inside a quoted local part is not the parameter.
  assertReply(fail('FROM:<"x SMTPUTF8 é"@example.com>', 'FROM'), 553, '5.6.7');
});

test('MAIL: AUTH takes a valid xtext value and is not kept', () => {
  const m = mail('FROM:<a@example.com> AUTH=<>');
  assert.deepEqual(m.params, { AUTH: '<>' });
  assert.equal(mail('FROM:<a@example.com> AUTH=user+2Bx@example.com').params.AUTH, 'user+2Bx@example.com');
  assertReply(fail('FROM:<a@example.com> AUTH=a+b', 'FROM'), 501, '5.5.4', /AUTH/);
  // AUTH does not depend on DSN.
  assert.ok(mail('FROM:<a@example.com> AUTH=<>', none));
});

test('MAIL: RET', () => {
  assert.equal(mail('FROM:<a@example.com> RET=FULL').ret, 'FULL');
  assert.equal(mail('FROM:<a@example.com> ret=hdrs').ret, 'HDRS');
  assertReply(fail('FROM:<a@example.com> RET=BODY', 'FROM'), 501, '5.5.4', /RET/);
  assertReply(fail('FROM:<a@example.com> RET=FULL', 'FROM', none), 555, '5.5.4', /DSN/);
});

test('MAIL: ENVID is xtext-decoded and at most 100 characters', () => {
  assert.equal(mail('FROM:<a@example.com> ENVID=QQ+2B123').envid, 'QQ+123');
  assert.equal(mail(`FROM:<a@example.com> ENVID=${'e'.repeat(100)}`).envid, 'e'.repeat(100));
  assertReply(fail(`FROM:<a@example.com> ENVID=${'e'.repeat(101)}`, 'FROM'), 501, '5.5.4', /ENVID/);
  assertReply(fail('FROM:<a@example.com> ENVID=a+zz', 'FROM'), 501, '5.5.4', /ENVID/);
  assertReply(fail('FROM:<a@example.com> ENVID=x', 'FROM', none), 555, '5.5.4', /DSN/);
});

test('MAIL: several parameters at once', () => {
  const m = mail('FROM:<a@example.com> SIZE=10 BODY=8BITMIME RET=HDRS ENVID=id1 SMTPUTF8');
  assert.deepEqual(
    { size: m.size, body: m.body, ret: m.ret, envid: m.envid, smtputf8: m.smtputf8 },
    { size: 10, body: '8BITMIME', ret: 'HDRS', envid: 'id1', smtputf8: true },
  );
  assert.deepEqual(Object.keys(m.params), ['SIZE', 'BODY', 'RET', 'ENVID', 'SMTPUTF8']);
});

test('MAIL: unknown, duplicate and malformed parameters', () => {
  assertReply(fail('FROM:<a@example.com> FOO=1', 'FROM'), 555, '5.5.4', /Unsupported parameter FOO/);
  assertReply(fail('FROM:<a@example.com> NOTIFY=NEVER', 'FROM'), 555, '5.5.4');
  assertReply(fail('FROM:<a@example.com> SIZE=1 SIZE=2', 'FROM'), 501, '5.5.4', /duplicate/);
  assertReply(fail('FROM:<a@example.com> =x', 'FROM'), 501, '5.5.4', /bad parameter/);
});

// ---- RCPT ------------------------------------------------------------------------------------

test('RCPT: a plain forward path', () => {
  assert.deepEqual(rcpt('TO:<bob@example.com>'), { data: '<bob@example.com>', address: 'bob@example.com', params: {} });
  assert.equal(rcpt('to: <bob@example.com>').address, 'bob@example.com');
});

test('RCPT: the null path is refused', () => {
  assertReply(fail('TO:<>', 'TO'), 501, '5.5.4', /null address/);
  assertReply(fail('FROM:<a@example.com>', 'TO'), 501, '5.5.4', /missing TO:/);
});

test('RCPT: <postmaster> without a domain, in any case, with or without parameters', () => {
  assert.equal(rcpt('TO:<postmaster>').address, 'postmaster');
  assert.equal(rcpt('TO:<PostMaster>').address, 'postmaster');
  assert.equal(rcpt('TO: <postmaster>').address, 'postmaster');
  const r = rcpt('TO:<postmaster> NOTIFY=NEVER');
  assert.deepEqual(r.notify, ['NEVER']);
  assertReply(fail('TO:<postmaster> FOO', 'TO'), 555, '5.5.4');
  assertReply(fail('TO:<postmaster> NOTIFY=NEVER NOTIFY=NEVER', 'TO'), 501, '5.5.4', /duplicate/);
  // Other local parts without a domain stay refused.
  assertReply(fail('TO:<abuse>', 'TO'), 501, '5.5.4');
  assertReply(fail('TO:<postmasterx>', 'TO'), 501, '5.5.4');
});

test('RCPT: non-ASCII addresses follow the transaction\'s SMTPUTF8', () => {
  assert.equal(rcpt('TO:<ü@example.com>', { smtputf8: true, dsn: false }).address, 'ü@example.com');
  assertReply(fail('TO:<ü@example.com>', 'TO', { smtputf8: false, dsn: false }), 553, '5.6.7');
  // SMTPUTF8 is a MAIL parameter, not an RCPT one.
  assertReply(fail('TO:<a@example.com> SMTPUTF8', 'TO'), 555, '5.5.4');
});

test('RCPT: NOTIFY', () => {
  assert.deepEqual(rcpt('TO:<b@example.com> NOTIFY=SUCCESS,FAILURE,DELAY').notify, ['SUCCESS', 'FAILURE', 'DELAY']);
  assert.deepEqual(rcpt('TO:<b@example.com> notify=never').notify, ['NEVER']);
  for (const v of ['NEVER,SUCCESS', 'SOMETIMES', '', 'SUCCESS,,FAILURE']) {
    assertReply(fail(`TO:<b@example.com> NOTIFY=${v}`, 'TO'), 501, '5.5.4', /NOTIFY/);
  }
  assertReply(fail('TO:<b@example.com> NOTIFY=NEVER', 'TO', none), 555, '5.5.4', /DSN/);
});

test('RCPT: ORCPT', () => {
  assert.equal(rcpt('TO:<b@example.com> ORCPT=rfc822;b+2Bx@example.com').orcpt, 'rfc822;b+x@example.com');
  assertReply(fail('TO:<b@example.com> ORCPT=b@example.com', 'TO'), 501, '5.5.4', /ORCPT/);
  assertReply(fail('TO:<b@example.com> ORCPT=rfc822;', 'TO'), 501, '5.5.4', /ORCPT/);
  assertReply(fail('TO:<b@example.com> ORCPT=rfc822;a+b', 'TO'), 501, '5.5.4', /ORCPT/);
  assertReply(fail('TO:<b@example.com> ORCPT=rfc822;b@example.com', 'TO', none), 555, '5.5.4');
});

test('RCPT: MAIL-only parameters are unknown here', () => {
  for (const p of ['SIZE=10', 'BODY=7BIT', 'RET=FULL', 'ENVID=x', 'AUTH=<>', 'XFOO']) {
    assertReply(fail(`TO:<b@example.com> ${p}`, 'TO'), 555, '5.5.4', /Unsupported parameter/);
  }
});

test('RCPT: a source route is accepted and the data kept as sent', () => {
  const r = rcpt('TO:<@relay.example:b@example.com>');
  assert.equal(r.address, 'b@example.com');
  assert.equal(r.data, '<@relay.example:b@example.com>');
});
