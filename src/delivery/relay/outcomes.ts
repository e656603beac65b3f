import type { Logger } from 'pino';
import type { Envelope, EnvelopeRecipient } from '../../queue/envelope.js';
import type { QueueIndex } from '../../queue/queue-index.js';
import type { RecipientOutcome } from '../dsn.js';
import { delayWarningDue, nextAttempt, shouldGiveUp, type RetrySchedule } from '../retry.js';

/** What one attempt decided for one recipient. */
export interface AttemptResult {
  address: string;
  /** 2xx delivered, 4xx (or a network error) later, 5xx never. */
  code: number;
  enhanced?: string;
  /** The remote reply, or our description of a local/network failure. */
  reply: string;
  remoteMta?: string;
  /** The next hop took the DSN parameters (RFC 3461): it reports success itself, so no "relayed" DSN. */
  dsnPassed?: boolean;
}

export interface RelayCounters {
  delivered: number;
  deferred: number;
  bounced: number;
}

const statusOf = (r: AttemptResult, cls: 2 | 4 | 5): string => {
  const e = r.enhanced && Number(r.enhanced[0]) === cls ? r.enhanced : `${cls}.0.0`;
  return e;
};

/**
 * Settles recipients from one attempt (R4): delivered on 2xx; failed (and reported) on 5xx
 * or when the retry schedule gives up; otherwise retried later, with a delay notice once the
 * schedule says so. Written durably through the queue index; `report` gets what a DSN may
 * be owed while the message file still exists.
 */
export async function applyResults(
  index: QueueIndex,
  id: string,
  results: AttemptResult[],
  schedule: RetrySchedule,
  counters: RelayCounters,
  log: Logger,
  relay: string,
  report: (env: Envelope, outcomes: RecipientOutcome[]) => Promise<void>,
): Promise<void> {
  await index.update(id, async (env) => {
    const outcomes: RecipientOutcome[] = [];
    const now = Date.now();
    const queuedAt = Date.parse(env.received);
    for (const res of results) {
      const r = env.recipients.find((x: EnvelopeRecipient) => x.state === 'pending' && x.address === res.address);
      if (!r) continue;
      r.attempts = (r.attempts ?? 0) + 1;
      r.lastError = res.code >= 300 ? res.reply.split('\r\n').join(' ') : undefined;
      const base = { address: r.address, remoteMta: res.remoteMta, diagnostic: res.reply, lastAttempt: new Date(now) };
      const cls = Math.floor(res.code / 100);
      const delay = Math.round((now - queuedAt) / 1000);
      if (cls === 2) {
        r.state = 'delivered';
        counters.delivered++;
        log.info({ queueId: id, to: r.address, relay, reply: res.reply, delaySeconds: delay }, 'relayed');
        if (!res.dsnPassed) outcomes.push({ ...base, action: 'relayed', status: statusOf(res, 2) });
      } else if (cls === 5 || shouldGiveUp(queuedAt, now, schedule)) {
        r.state = 'failed';
        counters.bounced++;
        log.warn({ queueId: id, to: r.address, relay, reply: res.reply, delaySeconds: delay, attempts: r.attempts }, 'bounced');
        outcomes.push({ ...base, action: 'failed', status: statusOf(res, cls === 5 ? 5 : 4) });
      } else {
        r.nextAttempt = nextAttempt(queuedAt, r.attempts, now, schedule);
        counters.deferred++;
        log.info({ queueId: id, to: r.address, relay, reply: res.reply, delaySeconds: delay, next: new Date(r.nextAttempt).toISOString() }, 'deferred');
        if (delayWarningDue(queuedAt, now, !!r.delayWarned, schedule)) {
          r.delayWarned = true;
          outcomes.push({ ...base, action: 'delayed', status: statusOf(res, 4), willRetryUntil: new Date(queuedAt + schedule.giveUpAfter * 1000) });
        }
      }
    }
    // Inside the lock: the message file is still there for the report, even when settled.
    if (outcomes.length) await report(env, outcomes);
  });
}
