import { readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Envelope } from '../queue/envelope.js';
import type { Spool } from '../queue/spool.js';
import { queueIdTag } from './protocol.js';
import type { TrackedQueueIndex } from './tracked-queue.js';

/**
 * Takes into the queue the committed messages of a dead worker that never reached the primary,
 * and removes what the worker left unfinished (never acknowledged) and its spare envelope files. Only files whose queue id
 * carries the worker's tag: another worker's commit in progress is that worker's to hand over.
 * Call it once the worker's IPC channel is closed, so no hand-off of it can still arrive.
 */
export async function rescanSpool(spool: Spool, queue: TrackedQueueIndex, tag: string): Promise<{ rescued: string[]; removed: string[] }> {
  const names = await readdir(spool.dir);
  const idOf = (name: string): string => name.slice(0, name.indexOf('.'));
  const mine = names.filter((n) => n.indexOf('.') > 0 && queueIdTag(idOf(n)) === tag);
  const envs = new Set(mine.filter((n) => n.endsWith('.env')).map(idOf));
  const rescued: string[] = [];
  const removed: string[] = [];
  for (const id of [...envs].sort()) {
    // Checked before reading: a known message that settles meanwhile is forgotten only once
    // its envelope is unlinked, so the read below cannot bring it back.
    if (queue.knows(id)) continue;
    let env: Envelope;
    try {
      env = await spool.read(id);
    } catch (err) {
      // Gone (settled meanwhile) or unreadable: not ours to judge now; a restart's recovery will.
      if (!(err instanceof SyntaxError)) continue;
      // The worker died writing the envelope: the message was never acknowledged.
      await unlink(join(spool.dir, `${id}.env`)).catch(() => undefined);
      await unlink(spool.messagePath(id)).catch(() => undefined);
      removed.push(`${id}.env`);
      continue;
    }
    // An envelope rewrite the worker never finished: the envelope it would have replaced stands.
    await unlink(join(spool.dir, `${id}.env.tmp`)).catch(() => undefined);
    if (queue.offer({ ...env, recovered: true })) rescued.push(id);
  }
  for (const name of mine) {
    const id = idOf(name);
    if (envs.has(id) || queue.knows(id)) continue;
    // A message file without an envelope (DATA cut short) or a header rewrite in progress.
    if (name.endsWith('.msg') || name.endsWith('.rewrite')) {
      await unlink(join(spool.dir, name)).catch(() => undefined);
      removed.push(name);
    }
  }
  await spool.dropSpares(tag);
  return { rescued, removed };
}
