import type { Logger } from 'pino';
import type { Envelope } from '../queue/envelope.js';
import type { QueueIndex } from '../queue/queue-index.js';
import type { MaildirDelivery } from './maildir.js';
import { wantsNotification, type RecipientOutcome } from './dsn.js';

const RETRY_MIN_MS = 30_000;
const RETRY_MAX_MS = 3_600_000;
const CONCURRENCY = 16;

/**
 * Works the queue for local recipients: each committed envelope is delivered to its Maildir
 * folders, its state written back, and the message removed once every recipient is settled.
 * Remote recipients stay pending for the relay. A failed mailbox keeps the message queued and
 * is retried with a growing delay; nothing is dropped.
 */
export class LocalDispatcher {
  private readonly ready: Envelope[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();
  private running = 0;
  private idleWaiters: (() => void)[] = [];
  private stopped = false;
  /** Recipients delivered to a mailbox, and attempts that failed and wait for a retry. */
  readonly counters = { delivered: 0, deferred: 0 };

  constructor(
    private readonly index: QueueIndex,
    private readonly maildir: MaildirDelivery,
    private readonly log: Logger,
    /** Queues an RFC 3464 report (NOTIFY=SUCCESS asks for one on delivery, RFC 3461 §4.1). */
    private readonly report?: (env: Envelope, outcomes: RecipientOutcome[]) => Promise<void>,
  ) {}

  /** A freshly committed (or recovered) message. */
  enqueue(env: Envelope): void {
    if (!hasLocalWork(env)) return;
    const wait = (env.nextAttempt ?? 0) - Date.now();
    if (wait > 0) {
      const t = setTimeout(() => {
        this.timers.delete(t);
        this.enqueue({ ...env, nextAttempt: 0 });
      }, wait);
      t.unref();
      this.timers.add(t);
      return;
    }
    this.ready.push(env);
    this.pump();
  }

  private pump(): void {
    while (!this.stopped && this.running < CONCURRENCY && this.ready.length) {
      const env = this.ready.shift()!;
      this.running++;
      this.deliver(env)
        .catch((err: Error) => this.log.error({ queueId: env.id, err: err.message }, 'local delivery pass failed'))
        .finally(() => {
          this.running--;
          this.pump();
          if (this.running === 0 && this.ready.length === 0) {
            const w = this.idleWaiters;
            this.idleWaiters = [];
            for (const cb of w) cb();
          }
        });
    }
  }

  private async deliver(queued: Envelope): Promise<void> {
    let retry: Envelope | null = null;
    await this.index.update(queued.id, async (env) => {
      if (env.hold) return false;
      const pass = await deliverLocal(env, this.index.spool.messagePath(env.id), this.maildir, this.log, this.counters);
      if (!pass.touched) return false;
      // Inside the lock: the message file is still there for the report.
      if (pass.reports.length && this.report) await this.report(env, pass.reports);
      if (pass.failed) retry = env;
    });
    if (retry) this.enqueue(retry);
  }

  /** Resolves when nothing is being delivered right now (tests, shutdown). */
  idle(): Promise<void> {
    if (this.running === 0 && this.ready.length === 0) return Promise.resolve();
    return new Promise((res) => this.idleWaiters.push(res));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.ready.length = 0;
    if (this.running) await new Promise<void>((res) => this.idleWaiters.push(res));
  }
}

export interface LocalPass {
  /** Some local recipient was pending. */
  touched: boolean;
  /** Some mailbox failed: `env.nextAttempt` is set for the retry. */
  failed: boolean;
  /** Delivery notices asked for (NOTIFY=SUCCESS), for the caller to queue. */
  reports: RecipientOutcome[];
}

/**
 * One attempt at every pending local recipient of `env` (stored at `source`, of `size` bytes
 * when the caller knows), changing their states in place (the caller writes the envelope).
 * Recipients that share a mailbox (aliases) share one copy.
 */
export async function deliverLocal(
  env: Envelope,
  source: string,
  maildir: MaildirDelivery,
  log: Logger,
  counters: { delivered: number; deferred: number },
  size?: number,
): Promise<LocalPass> {
  const pass: LocalPass = { touched: false, failed: false, reports: [] };
  const done = new Map<string, Promise<string>>();
  for (const r of env.recipients) {
    if (r.state !== 'pending' || r.route.kind !== 'local') continue;
    pass.touched = true;
    const mailbox = r.route.mailbox;
    let p = done.get(mailbox);
    if (!p) {
      p = maildir.deliver(source, mailbox, env.id, size, env.recovered);
      done.set(mailbox, p);
    }
    r.attempts = (r.attempts ?? 0) + 1;
    try {
      const file = await p;
      r.state = 'delivered';
      counters.delivered++;
      log.info({ queueId: env.id, to: r.address, mailbox, file }, 'delivered');
      if (wantsNotification(r.dsn?.notify, 'delivered')) {
        pass.reports.push({ address: r.address, action: 'delivered', status: '2.0.0', diagnostic: 'delivered to the mailbox', lastAttempt: new Date() });
      }
    } catch (err) {
      pass.failed = true;
      counters.deferred++;
      r.lastError = (err as Error).message;
      log.warn({ queueId: env.id, to: r.address, mailbox, err: r.lastError, attempts: r.attempts }, 'local delivery deferred');
    }
  }
  if (pass.failed) {
    const attempts = Math.max(...env.recipients.map((r) => r.attempts ?? 0));
    env.nextAttempt = Date.now() + Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.max(0, attempts - 1));
  }
  return pass;
}

/**
 * Whether a first attempt at the local mailboxes may be made now, outside the queue's
 * dispatcher: local recipients wait, their retry time has come, and none asks for a delivery
 * notice (NOTIFY=SUCCESS), which is a new queued message for the queue's owner to make.
 */
export function deliverableAtOnce(env: Envelope): boolean {
  if (!hasLocalWork(env) || (env.nextAttempt ?? 0) > Date.now()) return false;
  return !env.recipients.some((r) => r.state === 'pending' && r.route.kind === 'local' && wantsNotification(r.dsn?.notify, 'delivered'));
}

/** Local recipients are waiting and nothing holds the message. */
export function hasLocalWork(env: Envelope): boolean {
  return !env.hold && env.recipients.some((r) => r.state === 'pending' && r.route.kind === 'local');
}
