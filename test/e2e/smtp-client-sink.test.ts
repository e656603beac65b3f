import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { SmtpClientError } from '../../src/delivery/smtp-client.js';
import { connectTo, peakMemoryGrowth, text, writeQueueFile } from '../helpers/client-fixtures.js';
import { haveSmtpSink, startSink, type Sink } from '../helpers/smtp-sink.js';

// Postfix's smtp-sink (installed with postfix, as .ci/run does) as an independent server.
const skip = haveSmtpSink ? false : 'smtp-sink not installed';

const MSG = 'From: a@example.com\r\nSubject: sink\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nlast\r\n';
const tx = (recipients: string[], extra: object = {}) => ({
  from: 'a@example.com',
  recipients: recipients.map((address) => ({ address })),
  size: MSG.length,
  data: text(MSG),
  ...extra,
});

async function withSink(args: string[], fn: (sink: Sink) => Promise<void>): Promise<void> {
  const sink = await startSink(args);
  try {
    await fn(sink);
  } finally {
    await sink.stop();
  }
}

test('pipelined transaction with BODY, RET/ENVID and NOTIFY/ORCPT; the body arrives unstuffed', { skip }, () =>
  withSink([], async (sink) => {
    const { client } = await connectTo(sink.port);
    assert.equal(client.remote, 'smtp-sink');
    assert.ok(client.extensions.has('PIPELINING') && client.extensions.has('DSN'));
    const r = await client.send({
      ...tx([]),
      recipients: [
        { address: 'b@example.com', notify: ['SUCCESS', 'FAILURE'], orcpt: 'rfc822;b+tag@example.com' },
        { address: 'c@example.com' },
      ],
      body: '8BITMIME',
      ret: 'HDRS',
      envid: 'env id',
    });
    await client.quit();
    assert.equal(r.pipelined, true);
    assert.deepEqual(r.perRecipient.map((p) => [p.code, p.stage]), [[250, 'DOT'], [250, 'DOT']]);
    const [dump] = await sink.dumps(1);
    assert.match(dump, /^X-Mail-Args: <a@example\.com> BODY=8BITMIME RET=HDRS ENVID=env\+20id$/m);
    assert.match(dump, /^X-Rcpt-Args: <b@example\.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b\+2Btag@example\.com$/m);
    assert.match(dump, /^X-Rcpt-Args: <c@example\.com>$/m);
    assert.ok(dump.includes('\nSubject: sink\n\n.leading dot\n..two dots\n.\nlast\n'), dump);
  }));

test('no DSN parameters to a server without DSN (-N)', { skip }, () =>
  withSink(['-N'], async (sink) => {
    const { client } = await connectTo(sink.port);
    const r = await client.send({ ...tx([]), recipients: [{ address: 'b@example.com', notify: ['NEVER'], orcpt: 'rfc822;b@example.com' }], ret: 'FULL', envid: 'x' });
    await client.quit();
    assert.equal(r.dsn, false);
    const [dump] = await sink.dumps(1);
    assert.match(dump, /^X-Mail-Args: <a@example\.com>$/m);
    assert.match(dump, /^X-Rcpt-Args: <b@example\.com>$/m);
  }));

test('8-bit message to a server without 8BITMIME (-8): refused locally with 554 5.6.3', { skip }, () =>
  withSink(['-8'], async (sink) => {
    const { client } = await connectTo(sink.port);
    const r = await client.send(tx(['b@example.com'], { body: '8BITMIME' }));
    assert.deepEqual(r.perRecipient.map((p) => [p.code, p.enhanced, p.stage]), [[554, '5.6.3', 'local']]);
    await client.quit();
    assert.equal((await sink.dumps(0, 200)).length, 0);
  }));

test('soft-rejected RCPT (-r rcpt, no pipelining): 4xx per recipient, and onReply turns it into 5xx', { skip }, () =>
  withSink(['-r', 'rcpt', '-b', '451 4.1.1 try again later'], async (sink) => {
    const plain = await connectTo(sink.port);
    assert.equal(plain.client.extensions.has('PIPELINING'), false);
    const r1 = await plain.client.send(tx(['b@example.com', 'c@example.com']));
    assert.deepEqual(r1.perRecipient.map((p) => [p.code, p.reply]), [
      [451, '451 4.1.1 try again later'],
      [451, '451 4.1.1 try again later'],
    ]);
    assert.equal(r1.pipelined, false);
    await plain.client.quit();
    const hooked = await connectTo(sink.port, { onReply: (cmd, _full, last) => (cmd.startsWith('RCPT') && last.startsWith('451') ? '550 5.1.1 unknown user (rewritten)' : null) });
    const r2 = await hooked.client.send(tx(['b@example.com']));
    assert.deepEqual(r2.perRecipient.map((p) => [p.code, p.enhanced, p.stage]), [[550, '5.1.1', 'RCPT']]);
    await hooked.client.quit();
    assert.deepEqual(hooked.seen.map((s) => s.command.split(' ')[0]), ['', 'EHLO', 'MAIL', 'RCPT', 'QUIT']);
  }));

test('hard-rejected end of data (-f .): every recipient gets the 5xx', { skip }, () =>
  withSink(['-f', '.', '-B', '554 5.7.1 rejected by policy'], async (sink) => {
    const { client, seen } = await connectTo(sink.port);
    const r = await client.send(tx(['b@example.com', 'c@example.com']));
    assert.deepEqual(r.perRecipient.map((p) => [p.code, p.stage]), [[554, 'DOT'], [554, 'DOT']]);
    assert.equal(r.data?.reply, '554 5.7.1 rejected by policy');
    assert.equal(seen.find((s) => s.command === '.')?.last, '554 5.7.1 rejected by policy');
    await client.quit();
  }));

test('DATA refused (-r data): accepted recipients get the DATA reply', { skip }, () =>
  withSink(['-r', 'data'], async (sink) => {
    const { client } = await connectTo(sink.port);
    const r = await client.send(tx(['b@example.com']));
    assert.deepEqual(r.perRecipient.map((p) => [p.code, p.stage]), [[450, 'DATA']]);
    await client.quit();
  }));

test('without ESMTP (-e): EHLO is refused and HELO used', { skip }, () =>
  withSink(['-e'], async (sink) => {
    const { client, seen } = await connectTo(sink.port);
    assert.equal(client.esmtp, false);
    assert.deepEqual(seen.map((s) => s.command), ['', 'EHLO client.test', 'HELO client.test']);
    const r = await client.send(tx(['b@example.com']));
    assert.equal(r.perRecipient[0].code, 250);
    await client.quit();
    const [dump] = await sink.dumps(1);
    assert.match(dump, /^X-Client-Proto: SMTP$/m);
    assert.match(dump, /^X-Mail-Args: <a@example\.com>$/m);
  }));

test('421 and disconnect after MAIL (-Q mail): every recipient gets the 421', { skip }, () =>
  withSink(['-Q', 'mail'], async (sink) => {
    const { client } = await connectTo(sink.port);
    const r = await client.send(tx(['b@example.com', 'c@example.com']));
    assert.deepEqual(r.perRecipient.map((p) => [p.code, p.stage]), [[421, 'MAIL'], [421, 'MAIL']]);
    assert.equal(client.closed, true);
  }));

test('disconnect without a reply after RCPT (-q rcpt): a network error naming RCPT and the host', { skip }, () =>
  withSink(['-q', 'rcpt'], async (sink) => {
    const { client } = await connectTo(sink.port);
    await assert.rejects(client.send(tx(['b@example.com'])), (e: SmtpClientError) => {
      assert.equal(e.kind, 'network');
      assert.match(e.command ?? '', /^(MAIL FROM|RCPT TO|DATA)/);
      assert.match(e.message, new RegExp(`127\\.0\\.0\\.1:${sink.port} \\(smtp-sink\\)`));
      return true;
    });
  }));

// Without -p, smtp-sink answers the pipelined DATA before the delayed RCPT (replies out of order).
test('RCPT timeout against a slow server (-p -W rcpt:2)', { skip }, () =>
  withSink(['-p', '-W', 'rcpt:2'], async (sink) => {
    const { client } = await connectTo(sink.port, { timeouts: { rcpt: 300 } });
    await assert.rejects(client.send(tx(['b@example.com'])), (e: SmtpClientError) => e.kind === 'timeout' && e.command === 'RCPT TO:<b@example.com>');
  }));

test('a 20 MB message from a queue file with little memory', { skip }, () =>
  withSink([], async (sink) => {
    const f = await writeQueueFile(270_000, 'z'.repeat(76));
    try {
      const { client } = await connectTo(sink.port);
      let code = 0;
      const growth = await peakMemoryGrowth(async () => {
        const r = await client.send({ ...tx(['b@example.com']), size: f.size, data: { path: f.path, offset: f.offset } });
        code = r.perRecipient[0].code;
      });
      await client.quit();
      assert.equal(code, 250);
      assert.ok(growth < 16 * 1024 * 1024, `memory grew by ${(growth / 1048576).toFixed(1)} MB`);
    } finally {
      await rm(f.dir, { recursive: true, force: true });
    }
  }));
