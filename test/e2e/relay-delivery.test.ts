import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, type Harness } from '../helpers/harness.js';
import { startScriptedServer, type ScriptedServer, type ScriptedServerOptions } from '../helpers/scripted-smtp-server.js';
import { haveSmtpSink, startSink, type Sink } from '../helpers/smtp-sink.js';
import { openSession } from '../helpers/smtp-client.js';
import { header, mail, multipartParts, parseDsn, queueMail, quickDelivery, smarthost, startRelayServer, subjects, waitFor, type RelayHarness } from '../helpers/relay-fixtures.js';
import type { HarnessOptions } from '../helpers/harness.js';

// Outcomes of relaying (R4) through real peers: a second moonpost, Postfix's smtp-sink with
// its reject options, and scripted servers; DSNs are read back from the local sender's
// mailbox and parsed.

const skipSink = haveSmtpSink ? false : 'smtp-sink not installed';

async function relay(t: TestContext, opts: HarnessOptions): Promise<RelayHarness> {
  const h = await startRelayServer(opts);
  t.after(() => h.stop());
  return h;
}

async function peer(t: TestContext, opts: ScriptedServerOptions = {}): Promise<ScriptedServer> {
  const p = await startScriptedServer({ hostname: 'peer.example', ...opts });
  t.after(() => p.close());
  return p;
}

async function sink(t: TestContext, args: string[] = []): Promise<Sink> {
  const s = await startSink(args);
  t.after(() => s.stop());
  return s;
}

async function settled(h: Harness, n: number, timeoutMs = 5000): Promise<void> {
  const c = h.server.relay.counters;
  await waitFor(`${n} settled recipients`, () => c.delivered + c.deferred + c.bounced >= n, timeoutMs);
  await h.server.relay.idle();
}

/** The local mailbox's messages once there are `n`. */
async function mailbox(h: Harness, box: string, n: number, timeoutMs = 5000): Promise<string[]> {
  return waitFor(`${n} message(s) in ${box}`, async () => {
    const m = await h.mailbox(box);
    return m.length >= n ? m : null;
  }, timeoutMs);
}

/** A raw transaction with ESMTP parameters (DSN's NOTIFY/ORCPT/RET/ENVID). */
async function sendRaw(port: number, mailCmd: string, rcptCmds: string[], data: string): Promise<string> {
  const c = await openSession(port);
  try {
    assert.equal((await c.cmd(mailCmd)).code, 250);
    for (const r of rcptCmds) assert.equal((await c.cmd(r)).code, 250, r);
    assert.equal((await c.cmd('DATA')).code, 354);
    c.write(`${data}.\r\n`);
    const r = await c.read();
    assert.equal(r.code, 250, r.raw);
    return /queued as (\S+)/.exec(r.raw)![1];
  } finally {
    c.close();
  }
}

// ------------------------------------------------------------------ local delivery

test('local delivery with NOTIFY=SUCCESS: a "delivered" DSN for that recipient only; none without it', async (t) => {
  const h = await relay(t, {});
  const data = mail('kept locally', { to: 'rcpt@localhost' });
  await sendRaw(h.port, 'MAIL FROM:<sender@localhost> ENVID=local-1', ['RCPT TO:<rcpt@localhost> NOTIFY=SUCCESS', 'RCPT TO:<other@localhost>'], data);
  const [report] = await mailbox(h, 'localhost/sender', 1);
  const dsn = parseDsn(report);
  assert.equal(header(dsn.message, 'subject'), 'Successful Mail Delivery Report');
  assert.deepEqual(dsn.recipients.map((r) => [r.get('final-recipient'), r.get('action'), r.get('status')]), [['rfc822; rcpt@localhost', 'delivered', '2.0.0']]);
  assert.equal(dsn.perMessage.get('original-envelope-id'), 'local-1');
  assert.equal((await mailbox(h, 'localhost/rcpt', 1)).length, 1);
  assert.equal((await mailbox(h, 'localhost/other', 1)).length, 1);
  // Without NOTIFY=SUCCESS, nothing more comes back.
  await sendRaw(h.port, 'MAIL FROM:<sender@localhost>', ['RCPT TO:<rcpt@localhost>'], mail('quiet', { to: 'rcpt@localhost' }));
  await mailbox(h, 'localhost/rcpt', 2);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal((await h.mailbox('localhost/sender')).length, 1);
});

// ------------------------------------------------------------------ a second moonpost

test('to a second moonpost: delivered intact with the return path; NOTIFY=SUCCESS passed on, so no "relayed" DSN', async (t) => {
  const remote = await startServer({ hostname: 'b.test', domains: [{ name: 'remote.test', catchAll: true }] });
  t.after(() => remote.stop());
  const h = await relay(t, { senders: [smarthost(0, remote.port, { helo: 'out.mx.test' })] });
  const body = ['.leading dot', '..two dots', '.', 'Grüße in 8 bits', 'last line'].join('\r\n');
  const data = mail('to moonpost', { to: 'x@remote.test', body, headers: ['MIME-Version: 1.0', 'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: 8bit'] });
  const c = await openSession(h.port);
  assert.equal((await c.cmd('MAIL FROM:<sender@localhost> BODY=8BITMIME')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<x@remote.test>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<y@remote.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;y-orig@remote.test')).code, 250);
  assert.equal((await c.cmd('DATA')).code, 354);
  c.write(Buffer.from(`${data.replace(/^\./gm, '..')}.\r\n`, 'utf8'));
  assert.equal((await c.read()).code, 250);
  c.close();
  await settled(h, 2);
  assert.deepEqual({ ...h.server.relay.counters }, { delivered: 2, deferred: 0, bounced: 0 });
  assert.equal(h.server.queue.size, 0);
  for (const box of ['remote.test/x', 'remote.test/y']) {
    const [got] = await mailbox(remote, box, 1);
    assert.match(got, /^Return-Path: <sender@localhost>\r\n/);
    // b.test's Received line names our HELO, then ours (mx.test) follows.
    assert.match(got, /^Received: from out\.mx\.test \(.*\[127\.0\.0\.1\]\)\r\n\tby b\.test /m);
    assert.ok(got.indexOf('by b.test') < got.indexOf('by mx.test'));
    const sent = Buffer.from(data, 'utf8').toString('latin1');
    assert.ok(got.endsWith(sent), 'the message arrives byte for byte');
  }
  // b.test supports DSN: NOTIFY/ORCPT went on with the message, so we report nothing (RFC 3461 §4.1);
  // b.test itself, the final hop, queues the "delivered" report for y, from <> to our sender.
  const reports = await waitFor('the final hop\'s DSN', () => (remote.server.queue.size ? remote.server.queue.list() : null), 5000);
  assert.deepEqual(reports.map((e) => [e.sender, e.recipients.map((r) => r.address)]), [['', ['sender@localhost']]]);
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(await h.mailbox('localhost/sender'), [], 'no "relayed" DSN when the next hop takes the DSN request');
});

// ------------------------------------------------------------------ smtp-sink

test('smtp-sink: delivery with the envelope and DSN parameters passed on; a "relayed" DSN when it lacks DSN (-N)', { skip: skipSink }, async (t) => {
  const withDsn = await sink(t);
  const noDsn = await sink(t, ['-N']);
  const h = await relay(t, {
    senders: [smarthost(0, withDsn.port, { rules: ['dsn.test'] }), smarthost(1, noDsn.port, { rules: ['nodsn.test'] })],
  });
  const data = mail('sink', { body: '.dot line\r\nend' });
  await sendRaw(h.port, 'MAIL FROM:<sender@localhost> RET=HDRS ENVID=env-1', ['RCPT TO:<a@dsn.test> NOTIFY=SUCCESS ORCPT=rfc822;orig@dsn.test', 'RCPT TO:<b@nodsn.test> NOTIFY=SUCCESS'], data.replace(/^\./gm, '..'));
  await settled(h, 2);
  const [dump] = await withDsn.dumps(1);
  assert.match(dump, /^X-Helo-Args: mx\.test$/m);
  assert.match(dump, /^X-Mail-Args: <sender@localhost> RET=HDRS ENVID=env-1$/m);
  assert.match(dump, /^X-Rcpt-Args: <a@dsn\.test> NOTIFY=SUCCESS ORCPT=rfc822;orig@dsn\.test$/m);
  assert.ok(dump.includes('\nSubject: sink\n'), dump);
  assert.ok(dump.includes('\n.dot line\nend\n'), 'unstuffed by the sink: we stuffed it');
  const [dump2] = await noDsn.dumps(1);
  assert.match(dump2, /^X-Rcpt-Args: <b@nodsn\.test>$/m);

  const [report] = await mailbox(h, 'localhost/sender', 1);
  const dsn = parseDsn(report);
  assert.equal(header(dsn.message, 'subject'), 'Successful Mail Delivery Report');
  assert.deepEqual(dsn.recipients.map((r) => [r.get('final-recipient'), r.get('action'), r.get('status')]), [['rfc822; b@nodsn.test', 'relayed', '2.0.0']]);
  assert.equal(dsn.perMessage.get('original-envelope-id'), 'env-1');
  assert.ok(dsn.original && !dsn.original.body, 'only the header of the original for a success report');
});

test('smtp-sink -f RCPT (5xx): bounced at once; -r RCPT (4xx): deferred and kept', { skip: skipSink }, async (t) => {
  const hard = await sink(t, ['-f', 'RCPT']);
  const soft = await sink(t, ['-r', 'RCPT']);
  const h = await relay(t, {
    senders: [smarthost(0, hard.port, { rules: ['hard.test'] }), smarthost(1, soft.port, { rules: ['soft.test'] })],
    delivery: quickDelivery(3600),
  });
  const id = await queueMail(h.port, 'sender@localhost', ['a@hard.test', 'b@soft.test'], mail('rejects'));
  await settled(h, 2);
  assert.deepEqual({ ...h.server.relay.counters }, { delivered: 0, deferred: 1, bounced: 1 });
  const env = h.server.queue.get(id)!;
  const [a, b] = env.recipients;
  assert.equal(a.state, 'failed');
  assert.match(a.lastError!, /^5\d\d /);
  assert.equal(b.state, 'pending');
  assert.match(b.lastError!, /^4\d\d /);
  assert.ok(b.nextAttempt! > Date.now() + 3500_000, 'next attempt after firstRetry');
  const [report] = await mailbox(h, 'localhost/sender', 1);
  const dsn = parseDsn(report);
  assert.deepEqual(dsn.recipients.map((r) => [r.get('final-recipient'), r.get('action')]), [['rfc822; a@hard.test', 'failed']]);
  assert.match(dsn.recipients[0].get('status')!, /^5\.\d+\.\d+$/);
  assert.match(dsn.recipients[0].get('diagnostic-code')!, /^smtp; 5\d\d /);
  assert.equal(dsn.recipients[0].get('remote-mta'), 'dns; smtp-sink');
});

test('smtp-sink -f . (refused at the end of data) bounces every recipient; -q . (no reply, dropped) is retried', { skip: skipSink }, async (t) => {
  const hard = await sink(t, ['-f', '.']);
  const drop = await sink(t, ['-q', '.']);
  const h = await relay(t, {
    senders: [smarthost(0, hard.port, { rules: ['hard.test'] }), smarthost(1, drop.port, { rules: ['drop.test'] })],
    delivery: quickDelivery(3600),
  });
  const id = await queueMail(h.port, 'sender@localhost', ['a@hard.test', 'b@hard.test', 'c@drop.test'], mail('end of data'));
  await settled(h, 3);
  assert.deepEqual({ ...h.server.relay.counters }, { delivered: 0, deferred: 1, bounced: 2 });
  const c = h.server.queue.get(id)!.recipients[2];
  assert.equal(c.state, 'pending');
  assert.match(c.lastError!, /^451 4\.4\.1 /, 'a dropped connection is a temporary network error');
  const [report] = await mailbox(h, 'localhost/sender', 1);
  assert.deepEqual(parseDsn(report).recipients.map((r) => [r.get('final-recipient'), r.get('action')]), [
    ['rfc822; a@hard.test', 'failed'],
    ['rfc822; b@hard.test', 'failed'],
  ]);
});

// ------------------------------------------------------------------ retries

test('retry then success: a 4xx is retried after firstRetry and then delivered', async (t) => {
  const rcptTimes: number[] = [];
  const p = await peer(t, {
    respond: (cmd) => {
      if (!cmd.startsWith('RCPT')) return undefined;
      rcptTimes.push(Date.now());
      return rcptTimes.length === 1 ? '451 4.7.1 Greylisted, try again later' : undefined;
    },
  });
  const h = await relay(t, { senders: [smarthost(0, p.port)], delivery: quickDelivery(0.4, 3600, 0.1) });
  const id = await queueMail(h.port, 'sender@localhost', ['x@remote.test'], mail('greylisted'));
  await waitFor('the delivery', () => h.server.relay.counters.delivered === 1);
  await h.server.relay.idle();
  assert.deepEqual({ ...h.server.relay.counters }, { delivered: 1, deferred: 1, bounced: 0 });
  assert.equal(rcptTimes.length, 2);
  assert.ok(rcptTimes[1] - rcptTimes[0] >= 390, `waited ${rcptTimes[1] - rcptTimes[0]} ms`);
  assert.equal(h.server.queue.get(id), undefined);
  assert.deepEqual(subjects(p.sessions.flatMap((s) => s.messages.map((m) => m.text))), ['greylisted']);
  assert.deepEqual(await h.mailbox('localhost/sender'), [], 'no DSN for a delivered message');
});

test('retry until give-up: a delay notice, then a failure DSN quoting the last reply; no attempt after', async (t) => {
  const rcptTimes: number[] = [];
  const p = await peer(t, {
    respond: (cmd) => {
      if (!cmd.startsWith('RCPT')) return undefined;
      rcptTimes.push(Date.now());
      return `451-4.3.0 Temporary trouble\r\n451 4.3.0 attempt ${rcptTimes.length}`;
    },
  });
  const h = await relay(t, { senders: [smarthost(0, p.port)], delivery: quickDelivery(0.2, 1.2, 0.05, 0.3) });
  const started = Date.now();
  await queueMail(h.port, 'sender@localhost', ['x@remote.test'], mail('doomed'));
  const reports = await mailbox(h, 'localhost/sender', 2, 6000);
  const took = Date.now() - started;
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(took >= 1100, `gave up after ${took} ms`);
  assert.ok(rcptTimes.length >= 3 && rcptTimes.length <= 6, `${rcptTimes.length} attempts`);
  assert.ok(rcptTimes.at(-1)! - started >= 1100, 'the last attempt is made at the give-up time');
  assert.equal(h.server.queue.size, 0);
  assert.equal(h.server.relay.counters.bounced, 1);
  assert.equal(h.server.relay.counters.deferred, rcptTimes.length - 1);

  const delayed = parseDsn(reports[0]);
  assert.equal(header(delayed.message, 'subject'), 'Delayed Mail (still being retried)');
  const d = delayed.recipients[0];
  assert.equal(d.get('action'), 'delayed');
  assert.equal(d.get('status'), '4.3.0');
  assert.ok(Date.parse(d.get('will-retry-until')!) >= started, d.get('will-retry-until'));
  assert.equal(delayed.parts.length, 3);
  assert.match(header(delayed.parts[2], 'content-type')!, /^text\/rfc822-headers/, 'a delay notice returns the header only');

  const failed = parseDsn(reports[1]);
  assert.equal(header(failed.message, 'subject'), 'Undelivered Mail Returned to Sender');
  const f = failed.recipients[0];
  assert.equal(f.get('action'), 'failed');
  assert.equal(f.get('status'), '4.3.0');
  assert.equal(f.get('diagnostic-code'), `smtp; 451-4.3.0 Temporary trouble 451 4.3.0 attempt ${rcptTimes.length}`);
  assert.equal(header(failed.original!, 'subject'), 'doomed');
});

// ------------------------------------------------------------------ the DSN itself

test('the failure DSN, parsed back: envelope, header, human part, delivery-status fields, the original', async (t) => {
  const p = await peer(t, {
    respond: (cmd) =>
      cmd.startsWith('RCPT TO:<bad@')
        ? '550-5.1.1 The email account that you tried to reach does not exist.\r\n550 5.1.1 Please check the address.'
        : undefined,
  });
  const h = await relay(t, { senders: [smarthost(0, p.port)] });
  const data = mail('returned to sender', { body: 'The original body.\r\nSecond line.' });
  const id = await sendRaw(
    h.port,
    'MAIL FROM:<sender@localhost> RET=FULL ENVID=envelope-77',
    ['RCPT TO:<good@remote.test>', 'RCPT TO:<bad@remote.test> NOTIFY=FAILURE ORCPT=rfc822;alias@remote.test'],
    data,
  );
  const [report] = await mailbox(h, 'localhost/sender', 1);
  const dsn = parseDsn(report);
  // Envelope and header.
  assert.match(report, /^Return-Path: <>\r\n/, 'sent from the null return path');
  assert.equal(header(dsn.message, 'from'), 'Mail Delivery System <MAILER-DAEMON@mx.test>');
  assert.equal(header(dsn.message, 'to'), '<sender@localhost>');
  assert.equal(header(dsn.message, 'subject'), 'Undelivered Mail Returned to Sender');
  assert.equal(header(dsn.message, 'auto-submitted'), 'auto-replied');
  assert.match(header(dsn.message, 'message-id')!, /^<[^@>]+@mx\.test>$/);
  assert.ok(!Number.isNaN(Date.parse(header(dsn.message, 'date')!)));
  // Parts: notification, report, original.
  assert.deepEqual(dsn.parts.map((x) => header(x, 'content-type')!.split(';')[0]), ['text/plain', 'message/delivery-status', 'message/rfc822']);
  const human = dsn.parts[0].body;
  assert.ok(
    human.includes('<bad@remote.test>:\r\n    host peer.example said:\r\n    550-5.1.1 The email account that you tried to reach does not exist.\r\n    550 5.1.1 Please check the address.'),
    human,
  );
  assert.doesNotMatch(human, /good@remote\.test/);
  // Per message.
  assert.equal(dsn.perMessage.get('original-envelope-id'), 'envelope-77');
  assert.equal(dsn.perMessage.get('reporting-mta'), 'dns; mx.test');
  assert.equal(dsn.perMessage.get('x-moonpost-queue-id'), id);
  assert.ok(Date.now() - Date.parse(dsn.perMessage.get('arrival-date')!) < 60_000);
  // Per recipient: only the failed one.
  assert.equal(dsn.recipients.length, 1);
  const r = dsn.recipients[0];
  assert.equal(r.get('original-recipient'), 'rfc822; alias@remote.test');
  assert.equal(r.get('final-recipient'), 'rfc822; bad@remote.test');
  assert.equal(r.get('action'), 'failed');
  assert.equal(r.get('status'), '5.1.1');
  assert.equal(r.get('remote-mta'), 'dns; peer.example');
  assert.equal(r.get('diagnostic-code'), 'smtp; 550-5.1.1 The email account that you tried to reach does not exist. 550 5.1.1 Please check the address.');
  assert.ok(Date.now() - Date.parse(r.get('last-attempt-date')!) < 60_000);
  // The original, whole (RET=FULL).
  assert.equal(header(dsn.original!, 'subject'), 'returned to sender');
  assert.equal(dsn.original!.body.replace(/\r?\n$/, ''), 'The original body.\r\nSecond line.');
  assert.match(header(dsn.original!, 'received')!, /by mx\.test \(moonpost\)/);
  assert.deepEqual(subjects(p.sessions.flatMap((s) => s.messages.map((m) => m.text))), ['returned to sender'], 'the good recipient got it');
});

test('no DSN for a failed message from <> or with NOTIFY=NEVER; RET=HDRS returns the header only', async (t) => {
  const p = await peer(t, { respond: (cmd) => (cmd.startsWith('RCPT') ? '550 5.1.1 No such user' : undefined) });
  const h = await relay(t, { senders: [smarthost(0, p.port)] });
  await queueMail(h.port, '', ['x@remote.test'], mail('from null sender'));
  await sendRaw(h.port, 'MAIL FROM:<sender@localhost>', ['RCPT TO:<x@remote.test> NOTIFY=NEVER'], mail('never notify'));
  await sendRaw(h.port, 'MAIL FROM:<sender@localhost> RET=HDRS', ['RCPT TO:<x@remote.test>'], mail('headers only', { body: 'secret body' }));
  await settled(h, 3);
  assert.equal(h.server.relay.counters.bounced, 3);
  const reports = await mailbox(h, 'localhost/sender', 1);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal((await h.mailbox('localhost/sender')).length, 1, 'one DSN, for the RET=HDRS message');
  const dsn = parseDsn(reports[0]);
  assert.match(header(dsn.parts[2], 'content-type')!, /^text\/rfc822-headers/);
  assert.equal(header(dsn.original!, 'subject'), 'headers only');
  assert.doesNotMatch(reports[0], /secret body/);
  assert.equal(h.server.queue.size, 0);
});

// ------------------------------------------------------------------ senders' domain filter rules

test('a recipient no sender selects is bounced at once with the reason; the others are relayed', async (t) => {
  const p = await peer(t);
  const h = await relay(t, { senders: [smarthost(0, p.port, { rules: ['remote.test'] })] });
  const id = await queueMail(h.port, 'sender@localhost', ['x@remote.test', 'y@unrouted.example'], mail('partly routable'));
  await settled(h, 2);
  assert.deepEqual({ ...h.server.relay.counters }, { delivered: 1, deferred: 0, bounced: 1 });
  assert.deepEqual(p.sessions.flatMap((s) => s.commands.filter((c) => c.startsWith('RCPT'))), ['RCPT TO:<x@remote.test>']);
  assert.equal(h.server.queue.get(id), undefined);
  const [report] = await mailbox(h, 'localhost/sender', 1);
  const r = parseDsn(report).recipients;
  assert.equal(r.length, 1);
  assert.equal(r[0].get('final-recipient'), 'rfc822; y@unrouted.example');
  assert.equal(r[0].get('action'), 'failed');
  assert.equal(r[0].get('status'), '5.4.4');
  assert.equal(r[0].get('diagnostic-code'), 'smtp; 550 5.4.4 No message sender is configured for unrouted.example');
  assert.equal(r[0].get('remote-mta'), undefined);
});

test('domain filter rules: wildcard, negation and size conditions choose the sender', async (t) => {
  const small = await peer(t, { hostname: 'small.example' });
  const large = await peer(t, { hostname: 'large.example' });
  const h = await relay(t, {
    senders: [
      smarthost(0, small.port, { rules: ['*.test', '!blocked.test', 'size<20000'] }),
      smarthost(1, large.port, { rules: ['size>=20000'] }),
    ],
  });
  const big = 'y'.repeat(998) + '\r\n';
  const bigBody = big.repeat(25);
  await queueMail(h.port, 'sender@localhost', ['a@x.test'], mail('small to x.test'));
  await queueMail(h.port, 'sender@localhost', ['b@blocked.test'], mail('small to blocked.test'));
  await queueMail(h.port, 'sender@localhost', ['c@x.test'], mail('large to x.test', { body: bigBody }));
  await queueMail(h.port, 'sender@localhost', ['d@blocked.test'], mail('large to blocked.test', { body: bigBody }));
  await queueMail(h.port, 'sender@localhost', ['e@example.org'], mail('small to example.org'));
  await queueMail(h.port, 'sender@localhost', ['f@sub.x.test'], mail('small to sub.x.test'));
  await settled(h, 6);
  const got = (p: ScriptedServer): string[] => subjects(p.sessions.flatMap((s) => s.messages.map((m) => m.text))).sort();
  assert.deepEqual(got(small), ['small to sub.x.test', 'small to x.test']);
  assert.deepEqual(got(large), ['large to blocked.test', 'large to x.test']);
  const reports = await mailbox(h, 'localhost/sender', 2);
  const bounced = reports.map((x) => parseDsn(x).recipients[0].get('final-recipient')).sort();
  assert.deepEqual(bounced, ['rfc822; b@blocked.test', 'rfc822; e@example.org']);
  assert.equal(h.server.queue.size, 0);
});

test('a multipart/report DSN parses into the parts the test helpers expect', () => {
  // Guards the parser the other tests rely on.
  const text = 'Content-Type: multipart/mixed; boundary="b"\r\n\r\npre\r\n--b\r\nContent-Type: text/plain\r\n\r\none\r\n--b\r\n\r\ntwo\r\n--b--\r\n';
  const parts = multipartParts({ headers: new Map([['content-type', ['multipart/mixed; boundary="b"']]]), body: text.split('\r\n\r\n').slice(1).join('\r\n\r\n') });
  assert.deepEqual(parts.map((x) => x.body), ['one', 'two']);
});
