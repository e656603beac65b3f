import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Spool, newQueueId } from '../../src/queue/spool.js';
import type { Envelope } from '../../src/queue/envelope.js';
import { queueIdTag } from '../../src/cluster/protocol.js';

async function withSpool(fn: (spool: Spool, dir: string) => Promise<void>, fsync = false): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'moonpost-spool-'));
  try {
    const spool = new Spool(dir, fsync);
    await spool.init();
    await fn(spool, dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function envelope(id: string, extra: Partial<Envelope> = {}): Envelope {
  return {
    id,
    sender: 'from@example.com',
    recipients: [{ address: 'to@example.com', route: { kind: 'local', mailbox: 'example.com/to' }, state: 'pending' }],
    received: '2026-11-22T00:00:00.000Z',
    headerOffset: 0,
    size: 0,
    client: { ip: '127.0.0.1', helo: 'client.example' },
    service: { id: 0, name: 'smtp' },
    ...extra,
  };
}

async function commitMessage(spool: Spool, id: string, body: string | Buffer, extra: Partial<Envelope> = {}): Promise<Envelope> {
  const w = spool.create(id);
  const buf = typeof body === 'string' ? Buffer.from(body) : body;
  w.write([buf.subarray(0, 3), buf.subarray(3)]);
  const env = envelope(id, { size: buf.length, ...extra });
  await spool.commit(env, w);
  return env;
}

const queueFiles = async (spool: Spool): Promise<string[]> => (await readdir(spool.dir)).sort();

test('newQueueId: unique, alphanumeric, increasing', () => {
  const ids = Array.from({ length: 2000 }, () => newQueueId());
  assert.equal(new Set(ids).size, ids.length);
  for (const id of ids) assert.match(id, /^[0-9A-Z]+$/);
  for (let i = 1; i < ids.length; i++) assert.ok(ids[i - 1] < ids[i], `${ids[i - 1]} < ${ids[i]}`);
});

test('init creates the queue folder under the data folder', async () => {
  await withSpool(async (spool, dir) => {
    assert.equal(spool.dir, join(dir, 'queue'));
    assert.deepEqual(await readdir(spool.dir), []);
    await spool.init(); // twice is fine
  });
});

test('write, commit, read back the bytes and the envelope', async () => {
  await withSpool(async (spool) => {
    const body = Buffer.concat([Buffer.from('Subject: x\r\n\r\n'), Buffer.from([0, 0xff, 0x80, 0x0d, 0x0a])]);
    const env = await commitMessage(spool, 'Q1', body, { dsn: { ret: 'HDRS', envid: 'e1' }, smtputf8: true });
    assert.deepEqual(await queueFiles(spool), ['Q1.env', 'Q1.msg']);
    assert.ok((await readFile(spool.messagePath('Q1'))).equals(body));
    assert.deepEqual(await spool.read('Q1'), env);
    assert.deepEqual(await spool.list(), [env]);
  });
});

test('commit with fsync on works the same', async () => {
  await withSpool(async (spool) => {
    const env = await commitMessage(spool, 'F1', 'hello\r\n');
    assert.deepEqual(await spool.read('F1'), env);
  }, true);
});

test('a large message written in many pieces arrives whole', async () => {
  await withSpool(async (spool) => {
    const w = spool.create('BIG');
    const pieces: Buffer[] = [];
    for (let i = 0; i < 200; i++) pieces.push(Buffer.alloc(10_000, i & 0xff));
    for (let i = 0; i < pieces.length; i += 10) w.write(pieces.slice(i, i + 10));
    assert.equal(w.bytes, 2_000_000);
    await spool.commit(envelope('BIG', { size: 2_000_000 }), w);
    assert.ok((await readFile(spool.messagePath('BIG'))).equals(Buffer.concat(pieces)));
  });
});

test('nothing is listed before commit', async () => {
  await withSpool(async (spool) => {
    const w = spool.create('P1');
    w.write([Buffer.from('partial')]);
    assert.deepEqual(await spool.list(), []);
    await w.abort();
    assert.deepEqual(await queueFiles(spool), []);
  });
});

test('committing an id twice fails and keeps the first envelope', async () => {
  await withSpool(async (spool) => {
    const env = await commitMessage(spool, 'D1', 'one');
    await assert.rejects(commitMessage(spool, 'D1', 'two'));
    assert.deepEqual(await spool.read('D1'), env);
    assert.equal((await readFile(spool.messagePath('D1'))).toString(), 'one');
  });
});

test('update replaces the envelope and leaves no temp file', async () => {
  await withSpool(async (spool) => {
    const env = await commitMessage(spool, 'U1', 'x');
    const next: Envelope = {
      ...env,
      recipients: [{ ...env.recipients[0], state: 'failed', lastError: '550 no such user', attempts: 1 }],
      nextAttempt: 123,
    };
    await spool.update(next);
    assert.deepEqual(await spool.read('U1'), next);
    assert.deepEqual(await queueFiles(spool), ['U1.env', 'U1.msg']);
  });
});

test('remove deletes both files', async () => {
  await withSpool(async (spool) => {
    await commitMessage(spool, 'R1', 'x');
    await commitMessage(spool, 'R2', 'y');
    await spool.remove('R1');
    assert.deepEqual(await queueFiles(spool), ['R2.env', 'R2.msg']);
    assert.deepEqual((await spool.list()).map((e) => e.id), ['R2']);
    await assert.rejects(spool.read('R1'));
    await assert.rejects(spool.remove('R1'));
  });
});

test('remove tolerates a message file that is already gone', async () => {
  await withSpool(async (spool) => {
    await commitMessage(spool, 'G1', 'x');
    await rm(spool.messagePath('G1'));
    await spool.remove('G1');
    assert.deepEqual(await queueFiles(spool), []);
  });
});

test('list is sorted by id and skips files that are not envelopes or do not parse', async () => {
  await withSpool(async (spool) => {
    await commitMessage(spool, 'B', 'b');
    await commitMessage(spool, 'A', 'a');
    await commitMessage(spool, 'C', 'c');
    await writeFile(join(spool.dir, 'Z.env'), '{"id": "Z", "sen');
    await writeFile(join(spool.dir, 'notes.txt'), 'hello');
    assert.deepEqual((await spool.list()).map((e) => e.id), ['A', 'B', 'C']);
  });
});

test('list of a spool whose folder does not exist is empty', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moonpost-spool-'));
  try {
    assert.deepEqual(await new Spool(join(dir, 'nowhere')).list(), []);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('recover removes orphans, torn envelopes and temp files, keeps committed messages', async () => {
  await withSpool(async (spool) => {
    const k2 = await commitMessage(spool, 'K2', 'kept two');
    const k1 = await commitMessage(spool, 'K1', 'kept one');
    // A crash before the envelope was written: only the message file.
    await writeFile(spool.messagePath('ORPHAN'), 'never acknowledged');
    // A torn envelope write: the envelope exists but does not parse.
    await writeFile(spool.messagePath('TORN'), 'body');
    await writeFile(join(spool.dir, 'TORN.env'), '{"id":"TORN","sender":"a@b","recip');
    // An empty envelope (crash right after create).
    await writeFile(spool.messagePath('EMPTY'), 'body');
    await writeFile(join(spool.dir, 'EMPTY.env'), '');
    // A crash in the middle of update(): the temp file next to a good envelope.
    await writeFile(join(spool.dir, 'K1.env.tmp'), '{"id":"K1"');

    const { envelopes, removed } = await spool.recover();
    // Marked as read back after a crash: a mailbox may hold a copy already.
    assert.deepEqual(envelopes, [k1, k2].map((e) => ({ ...e, recovered: true })));
    assert.deepEqual(removed.sort(), ['EMPTY.env', 'EMPTY.msg', 'K1.env.tmp', 'ORPHAN.msg', 'TORN.env', 'TORN.msg']);
    assert.deepEqual(await queueFiles(spool), ['K1.env', 'K1.msg', 'K2.env', 'K2.msg']);
    assert.equal((await readFile(spool.messagePath('K1'))).toString(), 'kept one');
    assert.deepEqual(await spool.read('K1'), k1);

    // A second recovery finds nothing more to do.
    const again = await spool.recover();
    assert.deepEqual(again.removed, []);
    assert.equal(again.envelopes.length, 2);
  });
});

test('recover on an empty spool', async () => {
  await withSpool(async (spool) => {
    assert.deepEqual(await spool.recover(), { envelopes: [], removed: [] });
  });
});

test('a settled envelope file is kept aside and rewritten by the next commit (no new inode); spares are dropped by tag and at recovery', async () => {
  await withSpool(async (spool, dir) => {
    await commitMessage(spool, 'S1', 'one');
    const ino = (await stat(join(spool.dir, 'S1.env'))).ino;
    await spool.remove('S1');
    assert.deepEqual(await queueFiles(spool), []);
    const spares = await readdir(join(dir, 'queue-spare'));
    assert.equal(spares.length, 1);
    const env = await commitMessage(spool, 'S2', 'two', { sender: 'someone.else@example.com' });
    assert.equal((await stat(join(spool.dir, 'S2.env'))).ino, ino, 'the next envelope reuses the file');
    assert.deepEqual(await spool.read('S2'), env, 'and holds only the new envelope');
    assert.deepEqual(await readdir(join(dir, 'queue-spare')), []);
    // An id committed twice still fails with a spare at hand (the message file is exclusive).
    await commitMessage(spool, 'S3', 'three');
    await spool.remove('S3');
    await assert.rejects(commitMessage(spool, 'S2', 'again'));
    assert.deepEqual(await spool.read('S2'), env);

    await spool.remove('S2');
    assert.equal((await readdir(join(dir, 'queue-spare'))).length, 2, 'the failed commit took no spare');
    await spool.dropSpares('ZZZZ');
    assert.equal((await readdir(join(dir, 'queue-spare'))).length, 2, 'another process\'s tag: kept');
    await spool.dropSpares(queueIdTag(newQueueId()));
    assert.deepEqual(await readdir(join(dir, 'queue-spare')), [], 'this process\'s: gone');
    await spool.remove((await commitMessage(spool, 'S4', 'four')).id);
    await spool.recover();
    assert.deepEqual(await readdir(join(dir, 'queue-spare')), [], 'recovery starts with none');
  });
});
