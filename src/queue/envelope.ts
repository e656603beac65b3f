import type { Route } from '../policy/directory.js';

/** RFC 3461 DSN options of a recipient, kept as received. */
export interface RecipientDsn {
  notify?: string[];
  orcpt?: string;
}

export type RecipientState = 'pending' | 'delivered' | 'failed';

export interface EnvelopeRecipient {
  address: string;
  /** Where it goes: a local mailbox folder (relative to the mail folder) or the relay. */
  route: Route;
  /** The RCPT TO address when an alias expanded it into this one. */
  original?: string;
  state: RecipientState;
  dsn?: RecipientDsn;
  /** Last delivery error, for `queue list` and the logs. */
  lastError?: string;
  attempts?: number;
  /** Epoch ms before which the relay does not try this recipient again (R4 backoff). */
  nextAttempt?: number;
  /** A delay notice (R4) went out for this recipient. */
  delayWarned?: boolean;
}

/** Everything the queue keeps about a message besides its bytes. */
export interface Envelope {
  id: string;
  /** Return path; "" for the null sender `<>`. */
  sender: string;
  recipients: EnvelopeRecipient[];
  /** ISO time of acceptance. */
  received: string;
  /** Bytes of the stored file that are ours, not the message's (the Return-Path line). */
  headerOffset: number;
  size: number;
  client: { ip: string; helo: string; authUser?: string; tls?: string };
  service: { id: number; name: string };
  body?: '7BIT' | '8BITMIME' | 'BINARYMIME';
  smtputf8?: boolean;
  dsn?: { ret?: 'FULL' | 'HDRS'; envid?: string };
  /** Epoch ms before which no delivery attempt is made (retry backoff). */
  nextAttempt?: number;
  /** Held by the administrator: not delivered until released. */
  hold?: boolean;
  /**
   * Read back after a crash (a restart's recovery, a dead worker's rescan): a mailbox may hold
   * a copy already, delivered just before the crash, which a reader may have moved to `cur/`.
   */
  recovered?: boolean;
}

export function pendingRecipients(env: Envelope): EnvelopeRecipient[] {
  return env.recipients.filter((r) => r.state === 'pending');
}
