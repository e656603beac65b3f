import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Spool } from '../../src/queue/spool.js';
import type { Envelope } from '../../src/queue/envelope.js';
import { TrackedQueueIndex } from '../../src/cluster/tracked-queue.js';
import { rescanSpool } from '../../src/cluster/rescan.js';

// The primary's rescan of a dead worker's spool files, on real files: what the worker
// committed and never handed over joins the queue once; nothing else is touched.

const DEAD = 'DEAD';
const LIVE = 'LIVE';

function envelope(id: string): Envelope {
  return {
    id,
    sender: 'a@client.test',
    recipients: [{ address: 'u@localhost', route: { kind: 'local', mailbox: 'localhost/u' }, state: 'pending' }],
    received: new Date().toISOString(),
    headerOffset: 0,
    size: 5,
    client: { ip: '127.0.0.1', helo: 'client.test' },
    service: { id: 0, name: 'smtp' },
  };
}

async function commit(spool: Spool, id: string): Promise<Envelope> {
  const env = envelope(id);
  const w = spool.create(id);
  w.write([Buffer.from('hello')]);
  await spool.commit(env, w);
  return env;
}

test('rescan: the dead worker\'s unhanded messages join the queue once; partial and orphan files go; others stay', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moonpost-rescan-'));
  try {
    const spool = new Spool(dir, false);
    await spool.init();
    const queue = new TrackedQueueIndex(spool);
    const added: string[] = [];
    queue.onAdded((env) => added.push(env.id));

    const handed = await commit(spool, `A0001${DEAD}`); // handed over before the worker died
    queue.offer(handed);
    await commit(spool, `A0002${DEAD}`); // committed, never handed over
    await commit(spool, `A0003${DEAD}`); // the same
    await writeFile(spool.messagePath(`A0004${DEAD}`), 'DATA cut short');
    await writeFile(spool.messagePath(`A0005${DEAD}`), 'envelope half written');
    await writeFile(join(spool.dir, `A0005${DEAD}.env`), '{"id":"A0005');
    await commit(spool, `A0006${LIVE}`); // another worker's, its hand-off still on the way
    await writeFile(spool.messagePath(`A0007${LIVE}`), 'another worker still receiving');

    const first = await rescanSpool(spool, queue, DEAD);
    assert.deepEqual(first.rescued, [`A0002${DEAD}`, `A0003${DEAD}`]);
    assert.deepEqual(first.removed.sort(), [`A0004${DEAD}.msg`, `A0005${DEAD}.env`]);
    assert.deepEqual(added, [`A0001${DEAD}`, `A0002${DEAD}`, `A0003${DEAD}`]);
    assert.equal(queue.get(`A0006${LIVE}`), undefined, 'a live worker\'s message is left to its hand-off');

    // A second rescan (another exit) adds nothing again.
    const second = await rescanSpool(spool, queue, DEAD);
    assert.deepEqual(second, { rescued: [], removed: [] });

    // A late duplicate hand-off is refused; after settling, the files are gone and so is the id.
    assert.equal(queue.offer(envelope(`A0002${DEAD}`)), false);
    assert.equal(
      await queue.update(`A0002${DEAD}`, (env) => {
        env.recipients[0].state = 'delivered';
      }),
      null,
    );
    assert.equal(queue.knows(`A0002${DEAD}`), false);
    assert.equal((await rescanSpool(spool, queue, DEAD)).rescued.length, 0, 'a settled message is not found again');
    assert.deepEqual(added, [`A0001${DEAD}`, `A0002${DEAD}`, `A0003${DEAD}`]);

    const left = (await readdir(spool.dir)).sort();
    assert.deepEqual(left, [`A0001${DEAD}.env`, `A0001${DEAD}.msg`, `A0003${DEAD}.env`, `A0003${DEAD}.msg`, `A0006${LIVE}.env`, `A0006${LIVE}.msg`, `A0007${LIVE}.msg`]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('rescan: a message settling while the rescan runs is not brought back', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moonpost-rescan-'));
  try {
    const spool = new Spool(dir, false);
    await spool.init();
    const queue = new TrackedQueueIndex(spool);
    let adds = 0;
    queue.onAdded(() => adds++);
    const ids = Array.from({ length: 50 }, (_, i) => `B${String(i).padStart(4, '0')}${DEAD}`);
    for (const id of ids) queue.offer(await commit(spool, id));
    // Every message settles while the rescan lists and reads the folder.
    const settling = ids.map((id) =>
      queue.update(id, (env) => {
        env.recipients[0].state = 'delivered';
      }),
    );
    const { rescued } = await rescanSpool(spool, queue, DEAD);
    await Promise.all(settling);
    assert.deepEqual(rescued, []);
    assert.equal(adds, ids.length);
    assert.equal(queue.size, 0);
    assert.deepEqual(await readdir(spool.dir), []);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
