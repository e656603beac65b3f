import type { Logger } from 'pino';
import type { Envelope } from '../queue/envelope.js';
import type { MaildirDelivery } from './maildir.js';
import { deliverableAtOnce, deliverLocal } from './local-dispatcher.js';

/**
 * Local mailboxes written before a message is acknowledged. The message file, already fsynced,
 * is linked into each Maildir and that folder fsynced: then it is as safe in the mailboxes as
 * in the queue, and a message whose recipients are all settled so never has an envelope on
 * disk. That saves, per message, the envelope's write and fsync, the queue folder's fsync, and
 * the later removal. What is left (relay recipients, a mailbox that failed) is committed to the
 * queue as usual, with the delivered recipients marked. A crash before the reply leaves the
 * mailbox copy without a 250: the client sends again, a duplicate and never a loss (RFC 5321
 * §6.1 accepts the one for the other).
 */
export class DeliverNow {
  constructor(
    private readonly maildir: MaildirDelivery,
    /** Recipients delivered and mailbox attempts that failed (the process's local counters). */
    readonly counters: { delivered: number; deferred: number } = { delivered: 0, deferred: 0 },
  ) {}

  /**
   * Delivers the local recipients of `env` (its file complete and durable at `source`, of
   * `size` bytes when known), marking their states in place. True when no recipient is left
   * pending: nothing to queue.
   */
  async settle(env: Envelope, source: string, log: Logger, size?: number): Promise<boolean> {
    if (!deliverableAtOnce(env)) return false;
    await deliverLocal(env, source, this.maildir, log, this.counters, size);
    return !env.recipients.some((r) => r.state === 'pending');
  }
}
