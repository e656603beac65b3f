import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, type Harness } from '../helpers/harness.js';
import { TestClient } from '../helpers/smtp-client.js';
import { freePort, header, mail, parseDsn, queueMail, smarthost, waitFor } from '../helpers/relay-fixtures.js';
import { Batv } from '../../src/policy/batv.js';

// BATV both ways between two real moonposts (R6 out, S26 in): a.test signs alice's return
// path; b.test records it, bounces one recipient, and relays the bounce to the tagged
// address back to a.test, which verifies the tag and delivers the bounce untagged.

const KEYS = [
  { id: 1, secret: 'old key' },
  { id: 2, secret: 'current key' },
];

async function box(h: Harness, mailbox: string, n = 1): Promise<string[]> {
  return waitFor(`${n} message(s) in ${mailbox}`, async () => {
    const m = await h.mailbox(mailbox);
    return m.length >= n ? m : null;
  });
}

test('BATV round trip: prvs= return path out, the bounce to it accepted and delivered untagged', async (t) => {
  const bPort = await freePort();
  const a = await startServer({
    hostname: 'mx.a.test',
    domains: [{ name: 'a.test' }],
    users: [{ name: 'alice', addresses: ['alice@a.test'] }],
    batv: { enabled: true, keys: KEYS, validDays: 7 },
    senders: [smarthost(0, bPort, { useBATV: true })],
  });
  t.after(() => a.stop());
  const b = await startServer({
    hostname: 'mx.b.test',
    services: [{ id: 0, name: 'smtp', listen: '127.0.0.1', port: bPort }],
    domains: [{ name: 'b.test' }],
    users: [{ name: 'bob', addresses: ['bob@b.test'] }],
    // An address b.test cannot deliver: no sender of b.test selects nowhere.example.
    aliases: { 'gone@b.test': ['someone@nowhere.example'] },
    // b.test relays mail for a.test (its bounces included) to a.
    senders: [smarthost(0, a.port, { rules: ['a.test'] })],
  });
  t.after(() => b.stop());

  await queueMail(a.port, 'alice@a.test', ['bob@b.test', 'gone@b.test'], mail('signed on the way out', { from: 'alice@a.test', to: 'bob@b.test' }));

  // What b.test recorded: the tagged return path, signed with the highest key.
  const [atBob] = await box(b, 'b.test/bob');
  const returnPath = /^Return-Path: <([^>]*)>/.exec(atBob)![1];
  assert.match(returnPath, /^prvs=2\d{3}[0-9a-f]{6}=alice@a\.test$/);
  assert.equal(new Batv(KEYS, 7).verify(returnPath), 'alice@a.test');

  // b.test's bounce for gone@b.test went to the tagged address, through its relay, into a.test.
  const [bounce] = await box(a, 'a.test/alice');
  assert.match(bounce, /^Return-Path: <>\r\n/);
  assert.match(bounce, /^Received: from mx\.b\.test \(.*\)\r\n\tby mx\.a\.test \(moonpost\) with ESMTP id \S+\r\n\tfor <alice@a\.test>;/m, 'delivered to the untagged address');
  assert.ok(!(await a.mailbox(`a.test/${returnPath.split('@')[0]}`)).length);
  const dsn = parseDsn(bounce);
  assert.equal(header(dsn.message, 'to'), `<${returnPath}>`);
  assert.equal(dsn.perMessage.get('reporting-mta'), 'dns; mx.b.test');
  assert.deepEqual(dsn.recipients.map((r) => [r.get('final-recipient'), r.get('action'), r.get('original-recipient')]), [
    ['rfc822; someone@nowhere.example', 'failed', 'rfc822; gone@b.test'],
  ]);
  assert.equal(header(dsn.original!, 'subject'), 'signed on the way out');
  // a.test writes the bounce to alice's mailbox before its 250 to b.test, so b's relay may
  // still be settling its copy: wait for both queues to drain before reading the counters.
  await waitFor('both queues empty', () => a.server.queue.size === 0 && b.server.queue.size === 0);
  assert.deepEqual({ ...a.server.relay.counters }, { delivered: 2, deferred: 0, bounced: 0 });
  assert.deepEqual({ ...b.server.relay.counters }, { delivered: 1, deferred: 0, bounced: 1 });

  // A bounce with a forged or missing tag is refused at RCPT.
  const c = await TestClient.connect(a.port, { localAddress: '127.0.0.2' });
  assert.equal((await c.read()).code, 220);
  assert.equal((await c.cmd('EHLO bounce.example')).code, 250);
  assert.equal((await c.cmd('MAIL FROM:<>')).code, 250);
  const forged = returnPath.replace(/=([0-9a-f])/, (_m, ch: string) => `=${ch === '0' ? '1' : '0'}`);
  for (const to of [forged, 'alice@a.test']) assert.match((await c.cmd(`RCPT TO:<${to}>`)).raw, /^550 5\.7\.1 /, to);
  assert.equal((await c.cmd(`RCPT TO:<${returnPath}>`)).code, 250);
  c.close();
});
