import type { Envelope } from '../queue/envelope.js';
import type { QueueIndex } from '../queue/queue-index.js';
import { readHeader } from '../delivery/relay/header-data.js';

export type QueueOp = 'list' | 'show' | 'retry' | 'delete' | 'hold' | 'release';

export interface QueueRequest {
  op: QueueOp;
  /** A queue id, or "all" (retry, hold, release). */
  id?: string;
}

export type QueueResponse = { ok: true; envelopes?: Envelope[]; header?: string[]; changed?: string[] } | { ok: false; error: string };

/**
 * The administrator's queue commands (`moonpost queue ...`), applied through the queue index
 * so they never race delivery. `wake` lets a running server act on a retry or release at once.
 */
export async function runQueueOp(index: QueueIndex, req: QueueRequest, wake: (env: Envelope) => void = () => undefined): Promise<QueueResponse> {
  if (req.op === 'list') return { ok: true, envelopes: index.list().sort((a, b) => (a.id < b.id ? -1 : 1)) };
  if (!req.id) return { ok: false, error: `queue ${req.op} needs a queue id` };
  const ids = req.id === 'all' && req.op !== 'show' && req.op !== 'delete' ? index.list().map((e) => e.id) : [req.id];
  if (!ids.every((id) => index.get(id))) return { ok: false, error: `no message ${req.id} in the queue` };
  if (req.op === 'show') {
    const env = index.get(req.id)!;
    const head = await readHeader(index.spool.messagePath(env.id), env.headerOffset).catch(() => ({ lines: [] }));
    return { ok: true, envelopes: [env], header: head.lines };
  }
  const changed: string[] = [];
  for (const id of ids) {
    if (req.op === 'delete') {
      await index.delete(id);
      changed.push(id);
      continue;
    }
    const env = await index.update(id, (e) => {
      if (req.op === 'hold') e.hold = true;
      if (req.op === 'release') e.hold = undefined;
      if (req.op === 'retry') {
        e.nextAttempt = 0;
        for (const r of e.recipients) if (r.state === 'pending') r.nextAttempt = 0;
      }
    });
    if (env) {
      changed.push(id);
      if (req.op !== 'hold') wake(env);
    }
  }
  return { ok: true, changed };
}
