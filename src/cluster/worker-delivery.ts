import type { Logger } from 'pino';
import type { Envelope } from '../queue/envelope.js';
import type { Spool } from '../queue/spool.js';
import type { DeliverNow } from '../delivery/deliver-now.js';
import { deliverableAtOnce } from '../delivery/local-dispatcher.js';

/**
 * A worker's own first attempt at the mail it queued. Most local mail never gets here: the
 * session writes the mailboxes before its 250 (DeliverNow). What is queued with local work
 * still to do (a message with a BCC monitor copy, and that copy) is delivered here, as the
 * primary would. What is left (relay recipients, a mailbox that failed, a delivery notice to
 * queue) is written back to the spool and handed to the primary, which owns it from then on.
 *
 * Should the worker die in between, the primary's rescan of its spool files finds the message
 * with the envelope as last written; a mailbox it reached already keeps one copy, since a
 * message has one name in every Maildir (maildirName).
 */
export class WorkerDelivery {
  private readonly inflight = new Set<Promise<void>>();

  constructor(
    private readonly spool: Spool,
    /** The sessions' own delivery, with this process's counters. */
    private readonly now: DeliverNow,
    private readonly log: Logger,
    private readonly handOff: (env: Envelope) => void,
  ) {}

  /** A message just committed to the spool. */
  take(env: Envelope): void {
    if (!deliverableAtOnce(env)) {
      this.handOff(env);
      return;
    }
    const p = this.deliver(env).finally(() => this.inflight.delete(p));
    this.inflight.add(p);
  }

  private async deliver(env: Envelope): Promise<void> {
    if (await this.now.settle(env, this.spool.messagePath(env.id), this.log)) {
      // Left behind, the files are found again by a rescan or a restart, and settle at once.
      await this.spool.remove(env.id).catch((err: Error) => this.log.error({ queueId: env.id, err: err.message }, 'removing a delivered message failed'));
      return;
    }
    try {
      await this.spool.update(env);
    } catch (err) {
      // The primary's attempts start from the envelope it is given; a mailbox already written keeps one copy.
      this.log.error({ queueId: env.id, err: (err as Error).message }, 'queue update after local delivery failed');
    }
    this.handOff(env);
  }

  /** Recipients delivered and mailbox attempts that failed, in this process. */
  get counters(): { delivered: number; deferred: number } {
    return this.now.counters;
  }

  /** Resolves once every delivery started so far has ended (graceful stop). */
  async idle(): Promise<void> {
    while (this.inflight.size) await Promise.all(this.inflight);
  }
}
