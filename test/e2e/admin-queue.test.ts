import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startServer, type Harness } from '../helpers/harness.js';
import { AdminClient, adminSection, ADMIN_TOKEN } from '../helpers/admin-client.js';
import { message, openSession, sendMail } from '../helpers/smtp-client.js';
import { controlRequest } from '../../src/admin/control-socket.js';

// The admin API's queue: list, filters, counts, detail, retry/hold/release/bounce/delete.
// No sender is configured, so mail for remote domains waits in the queue.

let h: Harness;
let api: AdminClient;
const ids: Record<string, string> = {};

async function queue(name: string, from: string, to: string[], subject: string): Promise<void> {
  const c = await openSession(h.port);
  const r = await sendMail(c, from, to, message(subject));
  assert.equal(r.code, 250, r.raw);
  ids[name] = /queued as (\S+)/.exec(r.raw)![1];
  c.close();
}

before(async () => {
  h = await startServer({ admin: await adminSection() });
  api = AdminClient.forPort(h.adminPort!, ADMIN_TOKEN);
  await queue('a', 'alice@localhost', ['bob@remote.example'], 'first');
  await queue('b', 'carol@localhost', ['dave@other.example', 'eve@remote.example', 'local@localhost'], 'second');
  await queue('c', '', ['frank@other.example'], 'third');
  await h.settle();
});
after(() => h.stop());

const listIds = async (query = ''): Promise<string[]> => {
  const r = await api.get(`/api/queue${query}`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.total, r.body.messages.length);
  return r.body.messages.map((m: { id: string }) => m.id);
};

test('list: every waiting message, oldest first, with recipients and state', async () => {
  const r = await api.get('/api/queue');
  assert.equal(r.status, 200);
  assert.deepEqual(
    r.body.messages.map((m: { id: string }) => m.id),
    [ids.a, ids.b, ids.c],
  );
  const b = r.body.messages[1];
  assert.equal(b.sender, 'carol@localhost');
  assert.equal(b.state, 'queued');
  assert.ok(b.ageSeconds >= 0);
  assert.deepEqual(
    b.recipients.map((x: { address: string; state: string; route: string }) => [x.address, x.state, x.route]),
    [
      ['dave@other.example', 'pending', 'remote'],
      ['eve@remote.example', 'pending', 'remote'],
      ['local@localhost', 'delivered', 'local localhost/local'],
    ],
  );
  assert.equal(b.recipients[0].attempts, 0);
  assert.equal(r.body.messages[2].sender, '');
});

test('filters: sender, recipient, domain, age, state; limit and offset', async () => {
  assert.deepEqual(await listIds('?sender=CAROL'), [ids.b]);
  assert.deepEqual(await listIds('?recipient=bob@'), [ids.a]);
  assert.deepEqual(await listIds('?domain=remote.example'), [ids.a, ids.b]);
  assert.deepEqual(await listIds('?domain=localhost'), [], 'only pending recipients count for the domain');
  assert.deepEqual(await listIds('?domain=other.example&sender=carol'), [ids.b]);
  assert.deepEqual(await listIds('?minAge=3600'), []);
  assert.deepEqual(await listIds('?maxAge=3600'), [ids.a, ids.b, ids.c]);
  assert.deepEqual(await listIds('?state=held'), []);
  assert.deepEqual(await listIds('?state=queued'), [ids.a, ids.b, ids.c]);
  const page = await api.get('/api/queue?limit=1&offset=1');
  assert.equal(page.body.total, 3);
  assert.deepEqual(
    page.body.messages.map((m: { id: string }) => m.id),
    [ids.b],
  );
  assert.equal((await api.get('/api/queue?state=lost')).status, 400);
  assert.equal((await api.get('/api/queue?limit=0')).status, 400);
  assert.equal((await api.get('/api/queue?colour=red')).status, 400);
});

test('counts: by state and by destination domain', async () => {
  const r = await api.get('/api/queue/counts');
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, {
    messages: 3,
    byState: { held: 0, deferred: 0, queued: 3 },
    byDomain: [
      { domain: 'other.example', recipients: 2, messages: 2 },
      { domain: 'remote.example', recipients: 2, messages: 2 },
    ],
  });
});

test('detail: envelope, header lines, per-recipient attempts and last reply', async () => {
  const r = await api.get(`/api/queue/${ids.a}`);
  assert.equal(r.status, 200);
  assert.equal(r.body.id, ids.a);
  assert.equal(r.body.sender, 'alice@localhost');
  assert.equal(r.body.client.ip, '127.0.0.1');
  assert.equal(r.body.client.helo, 'client.test');
  assert.equal(r.body.service.name, 'smtp');
  assert.ok(r.body.header.includes('Subject: first'), JSON.stringify(r.body.header));
  assert.ok(r.body.header.some((l: string) => l.startsWith('Received: from client.test')));
  assert.equal(r.body.hold, false);
  // A failed attempt, as the relay records one: the message is deferred with the reply kept.
  await h.server.queue.update(ids.a, (env) => {
    env.recipients[0].attempts = 1;
    env.recipients[0].lastError = '451 4.7.1 Greylisted, try again later';
    env.recipients[0].nextAttempt = Date.now() + 600_000;
  });
  const d = await api.get(`/api/queue/${ids.a}`);
  assert.equal(d.body.state, 'deferred');
  assert.equal(d.body.recipients[0].attempts, 1);
  assert.equal(d.body.recipients[0].lastReply, '451 4.7.1 Greylisted, try again later');
  assert.ok(Date.parse(d.body.recipients[0].nextAttempt) > Date.now());
  assert.deepEqual(await listIds('?state=deferred'), [ids.a]);
  assert.equal((await api.get('/api/queue/NOSUCHID')).status, 404);
});

test('hold, release and retry', async () => {
  const held = await api.post(`/api/queue/${ids.a}/hold`);
  assert.equal(held.status, 200);
  assert.deepEqual(held.body, { changed: [ids.a] });
  assert.equal(h.server.queue.get(ids.a)!.hold, true);
  assert.deepEqual(await listIds('?state=held'), [ids.a]);
  assert.equal((await api.get('/api/queue/counts')).body.byState.held, 1);

  assert.deepEqual((await api.post(`/api/queue/${ids.a}/release`)).body, { changed: [ids.a] });
  assert.equal(h.server.queue.get(ids.a)!.hold, undefined);
  assert.deepEqual(await listIds('?state=held'), []);

  const retry = await api.post(`/api/queue/${ids.a}/retry`);
  assert.deepEqual(retry.body, { changed: [ids.a] });
  assert.equal(h.server.queue.get(ids.a)!.recipients[0].nextAttempt, 0);
  const all = await api.post('/api/queue/all/hold');
  assert.deepEqual(all.body.changed.sort(), [ids.a, ids.b, ids.c].sort());
  await api.post('/api/queue/all/release');
  assert.deepEqual(await listIds('?state=held'), []);

  assert.equal((await api.post('/api/queue/NOSUCHID/hold')).status, 404);
  assert.equal((await api.post(`/api/queue/${ids.a}/explode`)).status, 400);
});

test('bounce: the pending recipients fail now and the sender gets a DSN with the reason', async () => {
  const before = h.server.relay.counters.bounced;
  const r = await api.post(`/api/queue/${ids.b}/bounce`, { reason: 'Destination retired' });
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, { changed: [ids.b] });
  assert.equal(h.server.queue.get(ids.b), undefined, 'settled: it left the queue');
  assert.equal(h.server.relay.counters.bounced, before + 2);
  await h.settle();
  const [dsn] = await h.mailbox('localhost/carol');
  assert.ok(dsn, 'the DSN reached the sender');
  assert.match(dsn, /Content-Type: multipart\/report; report-type=delivery-status/i);
  assert.match(dsn, /Final-Recipient: rfc822; ?dave@other\.example/i);
  assert.match(dsn, /Final-Recipient: rfc822; ?eve@remote\.example/i);
  assert.doesNotMatch(dsn, /Final-Recipient: rfc822; ?local@localhost/i, 'a delivered recipient is not reported');
  assert.match(dsn, /Action: failed/);
  assert.match(dsn, /550 5\.0\.0 Destination retired/);
  assert.equal((await api.post(`/api/queue/${ids.b}/bounce`)).status, 404);
});

test('bounce of a message from <> sends nothing; the default reason; through the control socket too', async () => {
  const r = await api.post(`/api/queue/${ids.c}/bounce`);
  assert.equal(r.status, 200);
  assert.equal(h.server.queue.get(ids.c), undefined);
  await h.settle();
  assert.equal(h.server.queue.list().filter((e) => e.sender === '').length, 0, 'no DSN about a DSN');
  // `moonpost queue bounce` goes through the control socket of the running server.
  await queue('d', 'grace@localhost', ['heidi@remote.example'], 'fourth');
  const res = await controlRequest(join(h.dataDir, 'control.sock'), { op: 'bounce', id: ids.d });
  assert.deepEqual(res, { ok: true, changed: [ids.d] });
  await h.settle();
  const [dsn] = await h.mailbox('localhost/grace');
  assert.match(dsn, /Delivery cancelled by the administrator/);
});

test('delete: the message is gone without a DSN; a second delete is 404', async () => {
  await queue('e', 'ivan@localhost', ['judy@remote.example'], 'fifth');
  const r = await api.delete(`/api/queue/${ids.e}`);
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, { changed: [ids.e] });
  assert.equal(h.server.queue.get(ids.e), undefined);
  assert.equal((await api.delete(`/api/queue/${ids.e}`)).status, 404);
  assert.equal((await api.delete('/api/queue/all')).status, 400);
  await h.settle();
  assert.deepEqual(await h.mailbox('localhost/ivan'), []);
  assert.deepEqual(await listIds(), [ids.a]);
});
