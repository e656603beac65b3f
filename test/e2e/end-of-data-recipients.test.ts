import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { hashPassword } from '../../src/policy/password.js';
import { startScriptServer, type ScriptHarness } from '../helpers/script-server.js';
import { TestClient, sendMail } from '../helpers/smtp-client.js';
import { REPORT_PRELUDE, report, utf8Bytes } from '../helpers/lua-report.js';

// CheckRecipients, MonitorBcc, LogRecipients and LogRecipientsBlocked (SEMANTICS S19, S21-S23)
// over SMTP, with the stored Maildir files checked.

let h: ScriptHarness;

before(async () => {
  h = await startScriptServer('', {
    domains: [{ name: 'localhost', catchAll: true }, { name: 'strict.test', catchAll: false }],
    users: [{ name: 'alice', password: await hashPassword('s3cret'), addresses: ['alice@strict.test'] }],
    services: [{ id: 0, name: 'mx', listen: '127.0.0.1', port: 0, authWithoutTls: true }],
    monitorBcc: 'monitor@localhost',
  });
});
after(async () => {
  await h.stop();
});

const setScript = (lua: string): Promise<void> => h.setScript(REPORT_PRELUDE + lua);

/** Greeting and EHLO from `ip`, then AUTH PLAIN as alice when `auth`. */
async function session(ip = '127.0.0.1', auth = false): Promise<TestClient> {
  const c = await TestClient.connect(h.port, { localAddress: ip });
  assert.equal((await c.read()).code, 220);
  assert.equal((await c.cmd('EHLO client.test')).code, 250);
  if (auth) assert.equal((await c.cmd(`AUTH PLAIN ${Buffer.from('\0alice\0s3cret').toString('base64')}`)).code, 235);
  return c;
}

const calls = (hook: string): number => h.hookStats(hook).calls;

// ---- CheckRecipients ---------------------------------------------------------------------

const CHECK_RECORDER = `
  function CheckRecipients(recipients, to, cc, bcc, ip, authSender, sender, subject, locally, size)
    put("check", { recipients = recipients, to = to, cc = cc, bcc = bcc, ip = ip, authSender = authSender,
      sender = sender, subject = subject, locally = locally, size = size })
    return ""
  end`;

test('CheckRecipients arguments: envelope, To and Cc parsed (groups, comments, quoted local parts), BCC, IP, sender, subject, locally sent, size', async () => {
  await setScript(CHECK_RECORDER);
  const msg =
    'From: s@example.com\r\n' +
    'To: Team: a1@localhost, "Bob B." <b1@localhost>;, undisclosed-recipients:;\r\n' +
    'To: "john doe"@localhost\r\n' +
    'Cc: c1@localhost (Carol),\r\n (comment) Dave <D1@LOCALHOST>\r\n' +
    'Subject: =?UTF-8?Q?Caf=C3=A9?= check\r\n' +
    '\r\n' +
    'body\r\n';
  const rcpts = ['a1@localhost', 'b1@localhost', '"john doe"@localhost', 'd1@localhost', 'hidden@localhost', 'secret@localhost'];
  const c = await session();
  const r = await sendMail(c, 's@example.com', rcpts, msg);
  assert.equal(r.code, 250, r.raw);
  const got = (await report(c)).check;
  c.close();
  assert.deepEqual(got, {
    recipients: rcpts,
    to: ['a1@localhost', 'b1@localhost', '"john doe"@localhost'],
    cc: ['c1@localhost', 'D1@LOCALHOST'],
    // Envelope recipients in neither To nor Cc (compared without regard to case).
    bcc: ['hidden@localhost', 'secret@localhost'],
    ip: '127.0.0.1',
    authSender: '',
    sender: 's@example.com',
    subject: utf8Bytes('Café check'),
    // 127.0.0.1 is in the relay networks (LocalClientAddress).
    locally: true,
    size: Buffer.byteLength(msg),
  });
  assert.equal((await h.mailbox('localhost/hidden')).length, 1);
});

test('CheckRecipients: locally sent is false from an address outside the relay networks, true once authenticated', async () => {
  await setScript(CHECK_RECORDER);
  const msg = 'To: x1@localhost\r\nSubject: s\r\n\r\nb\r\n';
  let c = await session('127.0.0.2');
  assert.equal((await sendMail(c, 'out@example.com', ['x1@localhost'], msg)).code, 250);
  let got = (await report(c)).check;
  c.close();
  assert.equal(got.ip, '127.0.0.2');
  assert.equal(got.locally, false);
  assert.equal(got.authSender, '');
  assert.deepEqual(got.bcc, []);
  c = await session('127.0.0.2', true);
  assert.equal((await sendMail(c, 'alice@strict.test', ['x1@localhost', 'x2@localhost'], msg)).code, 250);
  got = (await report(c)).check;
  c.close();
  assert.equal(got.locally, true);
  assert.equal(got.authSender, 'alice');
  assert.equal(got.sender, 'alice@strict.test');
  assert.deepEqual(got.bcc, ['x2@localhost']);
});

test('CheckRecipients: a 5xx or 4xx refuses the message with that reply; "", nothing or a codeless string accepts', async () => {
  await setScript(`
    function CheckRecipients(recipients, to, cc, bcc, ip, authSender, sender, subject)
      if subject == "perm" then return "550 5.7.1 No BCC allowed here" end
      if subject == "temp" then return "451 4.7.1 Try again later" end
      if subject == "multi" then return "554-5.7.1 first line\\r\\n554 5.7.1 second line" end
      if subject == "empty" then return "" end
      if subject == "junk" then return "no code here" end
    end
    function ProcessMessage(mailfrom, subject) note("ProcessMessage " .. subject) end`);
  const pm = calls('ProcessMessage');
  const c = await session();
  const send = (subject: string) => sendMail(c, 's@example.com', ['chk@localhost'], `Subject: ${subject}\r\n\r\nbody\r\n`);
  assert.equal((await send('perm')).raw, '550 5.7.1 No BCC allowed here\r\n');
  assert.equal((await send('temp')).raw, '451 4.7.1 Try again later\r\n');
  assert.equal((await send('multi')).raw, '554-5.7.1 first line\r\n554 5.7.1 second line\r\n');
  for (const s of ['empty', 'nothing', 'junk']) assert.equal((await send(s)).code, 250, s);
  // A refused message never reaches ProcessMessage.
  assert.deepEqual((await report(c)).order, ['ProcessMessage empty', 'ProcessMessage nothing', 'ProcessMessage junk']);
  c.close();
  assert.equal(calls('ProcessMessage'), pm + 3);
  const box = await h.mailbox('localhost/chk');
  assert.deepEqual(
    box.map((f) => /\r\nSubject: (\w+)\r\n/.exec(f)?.[1]),
    ['empty', 'nothing', 'junk'],
  );
});

// ---- MonitorBcc --------------------------------------------------------------------------

/** The stored file without its first line (our Return-Path) and the copy's first two lines. */
const afterLines = (file: string, n: number): string => {
  let at = 0;
  for (let i = 0; i < n; i++) at = file.indexOf('\r\n', at) + 2;
  return file.slice(at);
};

test('MonitorBcc: called with the BCC facts; the address it returns gets a copy with X-Bcc-Recipients, the recipients the original', async () => {
  await setScript(`
    function MonitorBcc(recipients, bcc, sender, authSender, subject, monitor)
      put("monitor", { recipients = recipients, bcc = bcc, sender = sender, authSender = authSender, subject = subject, monitor = monitor })
      return "<audit@localhost>"
    end
    function ProcessMessage(mailfrom, subject, recipients, actions)
      actions.HeaderModifiers = { "X-Scanned: yes" }
      return actions
    end`);
  const msg = 'From: alice@strict.test\r\nTo: vis@localhost\r\nSubject: quarterly\r\n\r\nnumbers\r\n';
  const monitored = (await h.mailbox('localhost/monitor')).length;
  const c = await session('127.0.0.2', true);
  const r = await sendMail(c, 'alice@strict.test', ['vis@localhost', 'hid1@localhost', 'hid2@localhost'], msg);
  assert.equal(r.code, 250, r.raw);
  assert.deepEqual((await report(c)).monitor, {
    recipients: ['vis@localhost', 'hid1@localhost', 'hid2@localhost'],
    bcc: ['hid1@localhost', 'hid2@localhost'],
    sender: 'alice@strict.test',
    authSender: 'alice',
    subject: 'quarterly',
    monitor: 'monitor@localhost',
  });
  c.close();
  const [original] = await h.mailbox('localhost/vis');
  assert.deepEqual(await h.mailbox('localhost/hid1'), [original]);
  assert.deepEqual(await h.mailbox('localhost/hid2'), [original]);
  assert.doesNotMatch(original, /X-Bcc-Recipients/i);
  assert.match(original, /\r\nX-Scanned: yes\r\n\r\nnumbers\r\n$/);
  const copies = await h.mailbox('localhost/audit');
  assert.equal(copies.length, 1);
  const copy = copies[0];
  assert.ok(copy.startsWith('Return-Path: <alice@strict.test>\r\nX-Bcc-Recipients: hid1@localhost, hid2@localhost\r\n'), copy);
  // Otherwise the copy is the message as stored (HeaderModifiers applied) byte for byte.
  assert.equal(afterLines(copy, 2), afterLines(original, 1));
  // The configured monitor gets nothing: the script chose another address.
  assert.equal((await h.mailbox('localhost/monitor')).length, monitored);
  const env = (await h.server.spool.list()).find((e) => e.recipients.some((x) => x.address === 'audit@localhost'));
  assert.equal(env, undefined, 'the copy was delivered and left the queue');
});

test('MonitorBcc: returning "" sends no copy; without MonitorBcc (or without any script) the configured monitorBcc gets it; no BCC, no call and no copy', async () => {
  const before = (await h.mailbox('localhost/monitor')).length;
  await setScript(`function MonitorBcc(recipients, bcc) note("MonitorBcc") return "" end`);
  let c = await session();
  assert.equal((await sendMail(c, 's@example.com', ['m-to@localhost', 'm-bcc@localhost'], 'To: m-to@localhost\r\nSubject: none\r\n\r\nb\r\n')).code, 250);
  assert.deepEqual((await report(c)).order, ['MonitorBcc']);
  // Every BCC recipient in To or Cc: MonitorBcc is not called.
  assert.equal((await sendMail(c, 's@example.com', ['m-to@localhost', 'm-cc@localhost'], 'To: m-to@localhost\r\nCc: m-cc@localhost\r\nSubject: nobcc\r\n\r\nb\r\n')).code, 250);
  assert.deepEqual((await report(c)).order, ['MonitorBcc']);
  c.close();
  assert.equal((await h.mailbox('localhost/monitor')).length, before);
  assert.equal((await h.mailbox('localhost/m-bcc')).length, 1);

  for (const script of [`function ProcessMessage() end`, '']) {
    await h.setScript(script);
    c = await session();
    assert.equal((await sendMail(c, 's@example.com', ['m-to@localhost', 'm-bcc@localhost'], 'To: m-to@localhost\r\nSubject: default\r\n\r\nb\r\n')).code, 250);
    assert.equal((await sendMail(c, 's@example.com', ['m-to@localhost'], 'To: m-to@localhost\r\nSubject: nobcc\r\n\r\nb\r\n')).code, 250);
    c.close();
  }
  const box = await h.mailbox('localhost/monitor');
  assert.equal(box.length, before + 2);
  for (const copy of box.slice(before)) {
    assert.match(copy, /^Return-Path: <s@example\.com>\r\nX-Bcc-Recipients: m-bcc@localhost\r\nReceived: /);
    assert.match(copy, /\r\nSubject: default\r\n/);
  }
});

// ---- LogRecipients, LogRecipientsBlocked, order ---------------------------------------------

const LOGGERS = `
  function LogRecipients(recipients, to, cc, bcc, sender, authSender, subject)
    note("LogRecipients")
    put("log", { recipients = recipients, to = to, cc = cc, bcc = bcc, sender = sender, authSender = authSender, subject = subject })
    return "ignored"
  end
  function LogRecipientsBlocked(blocked, reason, sender, authSender, subject)
    note("LogRecipientsBlocked")
    put("blocked", { blocked = blocked, reason = reason, sender = sender, authSender = authSender, subject = subject })
  end`;

test('LogRecipients gets the recipient view; LogRecipientsBlocked only when RCPTs were refused, with the refused ones and the reason', async () => {
  await setScript(LOGGERS);
  const blocked = calls('LogRecipientsBlocked');
  const c = await session('127.0.0.2', true);
  assert.equal(
    (await sendMail(c, 'alice@strict.test', ['l-to@localhost', 'l-cc@localhost', 'l-bcc@localhost'], 'To: l-to@localhost\r\nCc: l-cc@localhost\r\nSubject: logged\r\n\r\nb\r\n')).code,
    250,
  );
  let got = await report(c);
  assert.deepEqual(got.order, ['LogRecipients']);
  assert.deepEqual(got.log, {
    recipients: ['l-to@localhost', 'l-cc@localhost', 'l-bcc@localhost'],
    to: ['l-to@localhost'],
    cc: ['l-cc@localhost'],
    bcc: ['l-bcc@localhost'],
    sender: 'alice@strict.test',
    authSender: 'alice',
    subject: 'logged',
  });
  assert.equal(calls('LogRecipientsBlocked'), blocked);

  // Two RCPTs refused, one accepted: the message goes through and both refusals are logged.
  assert.equal((await c.cmd('MAIL FROM:<alice@strict.test>')).code, 250);
  assert.match((await c.cmd('RCPT TO:<nobody@strict.test>')).raw, /^550 5\.1\.1 /);
  assert.equal((await c.cmd('RCPT TO:<l-to@localhost>')).code, 250);
  assert.match((await c.cmd('RCPT TO:<ghost@strict.test>')).raw, /^550 5\.1\.1 /);
  assert.equal((await c.cmd('DATA')).code, 354);
  c.write('To: l-to@localhost\r\nSubject: partly\r\n\r\nb\r\n.\r\n');
  assert.equal((await c.read()).code, 250);
  got = await report(c);
  c.close();
  assert.deepEqual(got.order, ['LogRecipients', 'LogRecipients', 'LogRecipientsBlocked']);
  assert.deepEqual(got.log.recipients, ['l-to@localhost']);
  assert.deepEqual(got.blocked, {
    blocked: ['nobody@strict.test', 'ghost@strict.test'],
    reason: '<nobody@strict.test>: Recipient address rejected: User unknown',
    sender: 'alice@strict.test',
    authSender: 'alice',
    subject: 'partly',
  });
  assert.equal(calls('LogRecipientsBlocked'), blocked + 1);
  assert.equal((await h.mailbox('localhost/l-to')).length, 2);
});

test('LogRecipientsBlocked when CheckRecipients refuses: every recipient, with the refusal text; LogRecipients is not called', async () => {
  await setScript(`${LOGGERS}
    function CheckRecipients(recipients, to, cc, bcc)
      if #bcc > 0 then return "550 5.7.1 Bcc not allowed" end
    end`);
  const monitored = (await h.mailbox('localhost/monitor')).length;
  const c = await session();
  const r = await sendMail(c, 's@example.com', ['cr-to@localhost', 'cr-bcc@localhost'], 'To: cr-to@localhost\r\nSubject: refused\r\n\r\nb\r\n');
  assert.equal(r.raw, '550 5.7.1 Bcc not allowed\r\n');
  const got = await report(c);
  c.close();
  assert.deepEqual(got.order, ['LogRecipientsBlocked']);
  assert.deepEqual(got.blocked, { blocked: ['cr-to@localhost', 'cr-bcc@localhost'], reason: 'Bcc not allowed', sender: 's@example.com', authSender: '', subject: 'refused' });
  assert.deepEqual(await h.mailbox('localhost/cr-to'), []);
  assert.deepEqual(await h.mailbox('localhost/cr-bcc'), []);
  // A refused message has no BCC copy either.
  assert.equal((await h.mailbox('localhost/monitor')).length, monitored);
});

test('order of S19: EndMessage → CheckRecipients → ProcessMessage → MonitorBcc → LogRecipients → LogRecipientsBlocked', async () => {
  const hooks = ['DoDATAStart', 'StartMessage', 'EndMessage', 'CheckRecipients', 'ProcessMessage', 'MonitorBcc', 'LogRecipients', 'LogRecipientsBlocked', 'DoRSET'];
  await setScript(hooks.map((n) => `function ${n}() note("${n}") end`).join('\n'));
  const c = await session();
  assert.equal((await c.cmd('MAIL FROM:<s@example.com>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<o-to@localhost>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<nobody@strict.test>')).code, 550);
  assert.equal((await c.cmd('RCPT TO:<o-bcc@localhost>')).code, 250);
  assert.equal((await c.cmd('DATA')).code, 354);
  c.write('To: o-to@localhost\r\nSubject: order\r\n\r\nb\r\n.\r\n');
  assert.equal((await c.read()).code, 250);
  assert.equal((await c.cmd('RSET')).code, 250);
  assert.deepEqual((await report(c)).order, hooks);
  c.close();
  assert.equal((await h.mailbox('localhost/o-bcc')).length, 1);
  // MonitorBcc returned nothing: no copy, not even to the configured monitor.
  assert.equal((await h.mailbox('localhost/monitor')).filter((f) => f.includes('Subject: order')).length, 0);
});

test('MonitorBcc with SMTPUTF8 addresses: the copy names them in UTF-8, and is otherwise the original byte for byte', async () => {
  await h.setScript('');
  const before = (await h.mailbox('localhost/monitor')).length;
  const c = await session();
  assert.equal((await c.cmd('MAIL FROM:<jörg@example.com> SMTPUTF8')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<to@localhost>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<zoë@localhost>')).code, 250);
  assert.equal((await c.cmd('DATA')).code, 354);
  c.write(Buffer.from('To: to@localhost\r\nSubject: utf8\r\n\r\nb\r\n.\r\n', 'utf8'));
  assert.equal((await c.read()).code, 250);
  c.close();
  const [original] = await h.mailbox('localhost/to');
  const copies = (await h.mailbox('localhost/monitor')).slice(before);
  assert.equal(copies.length, 1);
  // mailbox() reads files as latin1: compare bytes.
  assert.ok(copies[0].startsWith(utf8Bytes('Return-Path: <jörg@example.com>\r\nX-Bcc-Recipients: zoë@localhost\r\n')), copies[0]);
  assert.ok(original.startsWith(utf8Bytes('Return-Path: <jörg@example.com>\r\n')), original);
  assert.equal(afterLines(copies[0], 2), afterLines(original, 1));
});
