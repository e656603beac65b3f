import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, type Harness } from '../helpers/harness.js';
import { makeCert } from '../helpers/tls-cert.js';
import { hashPassword } from '../../src/policy/password.js';
import type { Envelope } from '../../src/queue/envelope.js';
import { SmtpClientError } from '../../src/delivery/smtp-client.js';
import { connectTo, text } from '../helpers/client-fixtures.js';

// Relaying between two real moonposts: `a` queues mail for remote.test (nothing relays it
// yet), our client sends that queue file to `b` over STARTTLS with AUTH.
let a: Harness;
let b: Harness;
let cert: ReturnType<typeof makeCert>;

before(async () => {
  cert = makeCert();
  a = await startServer({ hostname: 'a.test' });
  b = await startServer({
    hostname: 'b.test',
    services: [{ id: 0, name: 'submission', listen: '127.0.0.1', port: 0, tls: 'starttls', cert: cert.cert, key: cert.key, auth: true }],
    domains: [{ name: 'remote.test' }],
    users: [
      { name: 'relay', password: await hashPassword('relay-pw'), addresses: ['relay@remote.test'] },
      { name: 'x', password: await hashPassword('x-pw'), addresses: ['x@remote.test', 'y@remote.test'] },
    ],
  });
});
after(async () => {
  await a.stop();
  await b.stop();
  rmSync(cert.dir, { recursive: true, force: true });
});

async function queued(h: Harness): Promise<Envelope[]> {
  const dir = join(h.dataDir, 'queue');
  const names = (await readdir(dir)).filter((n) => n.endsWith('.env'));
  return Promise.all(names.map(async (n) => JSON.parse(await readFile(join(dir, n), 'utf8')) as Envelope));
}

const MESSAGE = [
  'From: sender@example.com',
  'To: x@remote.test',
  'Subject: relayed ünïcode',
  'MIME-Version: 1.0',
  'Content-Type: text/plain; charset=utf-8',
  'Content-Transfer-Encoding: 8bit',
  '',
  '.a line with a leading dot',
  '..two dots',
  '.',
  'grüße',
  '',
].join('\r\n');

test('a queued message goes from one moonpost to another: Return-Path skipped, dots and 8-bit intact, DSN kept', async () => {
  const first = await connectTo(a.port);
  const queuedResult = await first.client.send({
    from: 'sender@example.com',
    recipients: [
      { address: 'x@remote.test', notify: ['SUCCESS', 'FAILURE'], orcpt: 'rfc822;x@remote.test' },
      { address: 'y@remote.test' },
      { address: 'nobody@remote.test' },
    ],
    size: Buffer.byteLength(MESSAGE),
    body: '8BITMIME',
    ret: 'HDRS',
    envid: 'ENV+1',
    data: text(MESSAGE),
  });
  await first.client.quit();
  assert.deepEqual(queuedResult.perRecipient.map((p) => p.code), [250, 250, 250]);

  const [env] = await queued(a);
  assert.equal(env.body, '8BITMIME');
  const file = join(a.dataDir, 'queue', `${env.id}.msg`);
  const stored = readFileSync(file);
  assert.match(stored.subarray(0, env.headerOffset).toString(), /^Return-Path: <sender@example\.com>\r\n$/);

  const { client, seen } = await connectTo(b.port, {
    tls: 'starttls',
    rejectUnauthorized: true,
    ca: readFileSync(cert.cert),
    servername: 'localhost',
    auth: { user: 'relay', password: 'relay-pw' },
  });
  assert.equal(client.remote, 'b.test');
  assert.ok(client.tls?.authorized);
  assert.equal([...client.extensions.keys()].filter((k) => ['PIPELINING', 'SIZE', '8BITMIME', 'SMTPUTF8', 'DSN'].includes(k)).length, 5);
  const r = await client.send({
    from: env.sender,
    recipients: env.recipients.map((x) => ({ address: x.address, notify: x.dsn?.notify, orcpt: x.dsn?.orcpt })),
    size: env.size,
    body: env.body,
    smtputf8: env.smtputf8,
    ret: env.dsn?.ret,
    envid: env.dsn?.envid,
    data: { path: file, offset: env.headerOffset },
  });
  await client.quit();
  assert.deepEqual(
    r.perRecipient.map((p) => [p.address, p.code, p.enhanced, p.stage]),
    [
      ['x@remote.test', 250, '2.0.0', 'DOT'],
      ['y@remote.test', 250, '2.0.0', 'DOT'],
      ['nobody@remote.test', 550, '5.1.1', 'RCPT'],
    ],
  );
  const mail = seen.find((s) => s.command.startsWith('MAIL'))!.command;
  assert.equal(mail, `MAIL FROM:<sender@example.com> SIZE=${env.size} BODY=8BITMIME RET=HDRS ENVID=ENV+2B1`);
  assert.ok(seen.some((s) => s.command === 'RCPT TO:<x@remote.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@remote.test'));
  assert.ok(seen.some((s) => s.command === 'AUTH PLAIN ****'));

  const [delivered] = await b.mailbox('remote.test/x');
  const original = stored.subarray(env.headerOffset).toString('latin1');
  assert.ok(delivered.endsWith(original), 'b stores exactly the bytes a queued, after its own Return-Path and Received');
  assert.match(delivered, /^Return-Path: <sender@example\.com>\r\nReceived: from client\.test .*\r\n\tby b\.test/s);
  assert.equal(delivered.match(/^Return-Path:/gm)?.length, 1, 'a\'s Return-Path line was not sent');
});

test('wrong credentials at a real moonpost: an auth error with its 535', async () => {
  await assert.rejects(
    connectTo(b.port, { tls: 'starttls', rejectUnauthorized: false, auth: { user: 'relay', password: 'nope' } }),
    (e: SmtpClientError) => e.kind === 'auth' && e.reply?.code === 535 && e.command === 'AUTH PLAIN ****',
  );
});

test('AUTH LOGIN at a real moonpost, then a pipelined batch with an SMTPUTF8 address refused by policy', async () => {
  const { client, seen } = await connectTo(b.port, { tls: 'starttls', rejectUnauthorized: false, auth: { user: 'x', password: 'x-pw', mechanism: 'LOGIN' } });
  assert.deepEqual(seen.filter((s) => s.command === '****').length, 2);
  const r = await client.send({ from: 'x@remote.test', recipients: [{ address: 'ü@remote.test' }, { address: 'y@remote.test' }], size: 20, data: text('Subject: u\r\n\r\nhi\r\n') });
  assert.equal(r.pipelined, true);
  assert.deepEqual(r.perRecipient.map((p) => [p.code, p.stage]), [[550, 'RCPT'], [250, 'DOT']]);
  assert.match(seen.find((s) => s.command.startsWith('MAIL'))!.command, / SMTPUTF8$/);
  await client.quit();
});
