import type { Logger } from 'pino';
import { pendingRecipients, type Envelope } from '../queue/envelope.js';
import type { QueueIndex } from '../queue/queue-index.js';
import { readHeader } from '../delivery/relay/header-data.js';
import { applyResults, type RelayCounters } from '../delivery/relay/outcomes.js';
import type { RetrySchedule } from '../delivery/retry.js';
import type { RecipientOutcome } from '../delivery/dsn.js';

export type QueueOp = 'list' | 'show' | 'retry' | 'delete' | 'hold' | 'release' | 'bounce';

export interface QueueRequest {
  op: QueueOp;
  /** A queue id, or "all" (retry, hold, release). */
  id?: string;
  /** bounce: the text of the failure reported in the DSN. */
  reason?: string;
}

export type QueueResponse = { ok: true; envelopes?: Envelope[]; header?: string[]; changed?: string[] } | { ok: false; error: string };

/** Fails one message's pending recipients now (the `bounce` op); only a running server has one. */
export type Bouncer = (id: string, reason: string) => Promise<void>;

export const DEFAULT_BOUNCE_REASON = 'Delivery cancelled by the administrator';

/**
 * The administrator's queue commands (`moonpost queue ...`), applied through the queue index
 * so they never race delivery. `wake` lets a running server act on a retry or release at once.
 */
export async function runQueueOp(
  index: QueueIndex,
  req: QueueRequest,
  wake: (env: Envelope) => void = () => undefined,
  bounce?: Bouncer,
): Promise<QueueResponse> {
  if (req.op === 'list') return { ok: true, envelopes: index.list().sort((a, b) => (a.id < b.id ? -1 : 1)) };
  if (!req.id) return { ok: false, error: `queue ${req.op} needs a queue id` };
  if (req.op === 'bounce' && !bounce) return { ok: false, error: 'queue bounce needs the running server (it queues the DSN)' };
  const ids = req.id === 'all' && req.op !== 'show' && req.op !== 'delete' && req.op !== 'bounce' ? index.list().map((e) => e.id) : [req.id];
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
    if (req.op === 'bounce') {
      await bounce!(id, req.reason?.trim() || DEFAULT_BOUNCE_REASON);
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

export interface BounceDeps {
  schedule: RetrySchedule;
  counters: RelayCounters;
  log: Logger;
  /** The relay's DSN path (Relay.report): queues the RFC 3464 report to the return path. */
  report: (env: Envelope, outcomes: RecipientOutcome[]) => Promise<void>;
}

/**
 * `bounce`: every pending recipient fails now with a 5xx carrying `reason`, through the same
 * path as a permanent failure from a remote server, so the sender gets a DSN (unless the
 * return path is <> or the recipient asked NOTIFY=NEVER) and the message leaves the queue.
 */
export function bouncer(index: QueueIndex, deps: BounceDeps): Bouncer {
  return async (id, reason) => {
    const env = index.get(id);
    if (!env) return;
    const text = reason.replace(/[\r\n]+/g, ' ').slice(0, 400);
    const results = pendingRecipients(env).map((r) => ({ address: r.address, code: 550, enhanced: '5.0.0', reply: `550 5.0.0 ${text}` }));
    if (!results.length) return;
    await applyResults(index, id, results, deps.schedule, deps.counters, deps.log, 'admin', deps.report);
  };
}
