import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Spool, newQueueId } from '../../src/queue/spool.js';
import type { Envelope, EnvelopeRecipient } from '../../src/queue/envelope.js';
import { MaildirDelivery, maildirName } from '../../src/delivery/maildir.js';
import { DirSyncers } from '../../src/util/fsync.js';
import { WorkerDelivery } from '../../src/cluster/worker-delivery.js';
import { DeliverNow } from '../../src/delivery/deliver-now.js';

const log = pino({ level: 'silent' });

async function withDirs(fn: (d: { spool: Spool; maildir: MaildirDelivery; mail: string }) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'moonpost-local-'));
  try {
    const spool = new Spool(dir, false);
    await spool.init();
    const mail = join(dir, 'mail');
    await fn({ spool, maildir: new MaildirDelivery(mail, new DirSyncers(false), false), mail });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const local = (user: string, extra: Partial<EnvelopeRecipient> = {}): EnvelopeRecipient => ({ address: `${user}@localhost`, route: { kind: 'local', mailbox: `localhost/${user}` }, state: 'pending', ...extra });
const remote = (address: string): EnvelopeRecipient => ({ address, route: { kind: 'remote' }, state: 'pending' });

async function commit(spool: Spool, recipients: EnvelopeRecipient[]): Promise<Envelope> {
  const id = newQueueId();
  const w = spool.create(id);
  w.write([Buffer.from('Subject: t\r\n\r\nbody\r\n')]);
  const env: Envelope = {
    id,
    sender: 'a@example.com',
    recipients,
    received: new Date().toISOString(),
    headerOffset: 0,
    size: 20,
    client: { ip: '127.0.0.1', helo: 'c.example' },
    service: { id: 0, name: 'smtp' },
  };
  await spool.commit(env, w);
  return env;
}

const newFiles = (mail: string, user: string): Promise<string[]> => readdir(join(mail, 'localhost', user, 'new')).catch(() => []);

test('maildirName: the time of acceptance from the queue id, then the id; the same for every attempt', () => {
  const t0 = Date.now();
  const id = newQueueId();
  const name = maildirName(id, 42);
  const m = /^(\d+)\.M(\d+)Q([0-9A-Z]+)\.[^/:]+,S=42$/.exec(name);
  assert.ok(m, name);
  assert.equal(m[3], id);
  const at = Number(m[1]) * 1000 + Number(m[2]) / 1000;
  assert.ok(Math.abs(at - t0) < 2000, `${at} near ${t0}`);
  assert.equal(maildirName(id, 42), name);
  assert.notEqual(maildirName(newQueueId(), 42), name);
});

test('a message delivered again to the same mailbox (a crash before the queue knew) keeps one copy', async () => {
  await withDirs(async ({ spool, maildir, mail }) => {
    const env = await commit(spool, [local('u')]);
    const first = await maildir.deliver(spool.messagePath(env.id), 'localhost/u', env.id);
    const again = await maildir.deliver(spool.messagePath(env.id), 'localhost/u', env.id);
    assert.equal(again, first);
    assert.equal((await newFiles(mail, 'u')).length, 1);
    const other = await commit(spool, [local('u')]);
    await maildir.deliver(spool.messagePath(other.id), 'localhost/u', other.id);
    assert.equal((await newFiles(mail, 'u')).length, 2, 'another message is another file');
  });
});

test('a recovered message finds the copy a reader moved to cur/ (with flags, or Dovecot\'s ,W=) and makes no second one', async () => {
  await withDirs(async ({ spool, maildir, mail }) => {
    const box = join(mail, 'localhost', 'u');
    for (const suffix of [':2,S', ',W=21:2,', '']) {
      const env = await commit(spool, [local('u')]);
      const first = await maildir.deliver(spool.messagePath(env.id), 'localhost/u', env.id);
      const name = first.slice(first.lastIndexOf('/') + 1);
      const read = join(box, 'cur', name + suffix);
      await rename(first, read);
      // The server restarts (a new delivery, no listing kept) and recovers the message.
      const restarted = new MaildirDelivery(mail, new DirSyncers(false), false);
      assert.equal(await restarted.deliver(spool.messagePath(env.id), 'localhost/u', env.id, undefined, true), read, suffix);
      assert.deepEqual(await newFiles(mail, 'u'), [], suffix);
      // Without the mark, the queue's own retries do not look (no crash, no copy).
      await maildir.deliver(spool.messagePath(env.id), 'localhost/u', env.id);
      assert.deepEqual(await newFiles(mail, 'u'), [name], suffix);
      await unlink(join(box, 'new', name));
    }
    // A name that only starts like the message's is another message.
    const env = await commit(spool, [local('u')]);
    const name = maildirName(env.id, 20);
    await writeFile(join(box, 'cur', `${name}0:2,`), 'another');
    const restarted = new MaildirDelivery(mail, new DirSyncers(false), false);
    const file = await restarted.deliver(spool.messagePath(env.id), 'localhost/u', env.id, 20, true);
    assert.equal(file, join(box, 'new', name));
    // A copy left in new/ is the link's EEXIST: still one file.
    assert.equal(await restarted.deliver(spool.messagePath(env.id), 'localhost/u', env.id, 20, true), file);
    assert.deepEqual(await newFiles(mail, 'u'), [name]);
  });
});

test('worker delivery: local mail settles in the worker; the rest reaches the primary as written on disk', async () => {
  await withDirs(async ({ spool, maildir, mail }) => {
    const handed: Envelope[] = [];
    const wd = new WorkerDelivery(spool, new DeliverNow(maildir), log, (env) => handed.push(structuredClone(env)));

    // Local only: delivered and removed here, nothing handed over.
    const only = await commit(spool, [local('a'), local('b')]);
    wd.take(only);
    await wd.idle();
    assert.equal(handed.length, 0);
    assert.deepEqual(await readdir(spool.dir), []);
    assert.equal((await newFiles(mail, 'a')).length, 1);
    assert.equal((await newFiles(mail, 'b')).length, 1);

    // Local and remote: the local part is done, the envelope records it, the primary gets the rest.
    const mixed = await commit(spool, [local('a'), remote('r@remote.example')]);
    wd.take(mixed);
    await wd.idle();
    assert.equal(handed.length, 1);
    assert.deepEqual(handed[0].recipients.map((r) => r.state), ['delivered', 'pending']);
    assert.deepEqual(await spool.read(mixed.id), handed[0]);
    assert.equal((await newFiles(mail, 'a')).length, 2);

    // A mailbox that cannot be written: handed over with the error and a time for the retry.
    await writeFile(join(mail, 'localhost', 'broken'), 'a file where the folder should be');
    const broken = await commit(spool, [local('broken')]);
    wd.take(broken);
    await wd.idle();
    assert.equal(handed.length, 2);
    const [r] = handed[1].recipients;
    assert.equal(r.state, 'pending');
    assert.equal(r.attempts, 1);
    assert.match(r.lastError ?? '', /maildir .*broken/);
    assert.ok((handed[1].nextAttempt ?? 0) > Date.now());
    assert.deepEqual(await spool.read(broken.id), handed[1]);

    // A delivery notice is asked for, or the message is held: the primary's, untouched.
    const notify = await commit(spool, [local('c', { dsn: { notify: ['SUCCESS'] } })]);
    wd.take(notify);
    const held = await commit(spool, [local('c')]);
    wd.take({ ...held, hold: true });
    await wd.idle();
    assert.deepEqual(handed.slice(2).map((e) => [e.id, e.recipients[0].state]), [
      [notify.id, 'pending'],
      [held.id, 'pending'],
    ]);
    assert.deepEqual(await newFiles(mail, 'c'), []);
    assert.deepEqual(wd.counters, { delivered: 3, deferred: 1 });
  });
});
