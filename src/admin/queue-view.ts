import { pendingRecipients, type Envelope } from '../queue/envelope.js';

/**
 * A queued message's state for the console: `held` by the administrator, `deferred` after a
 * failed attempt (it waits for its retry), else `queued` (not tried yet, or waiting for a sender).
 */
export type MessageState = 'held' | 'deferred' | 'queued';
export const MESSAGE_STATES: MessageState[] = ['held', 'deferred', 'queued'];

export function messageState(env: Envelope): MessageState {
  if (env.hold) return 'held';
  if (pendingRecipients(env).some((r) => (r.attempts ?? 0) > 0 && r.lastError)) return 'deferred';
  return 'queued';
}

const domainOf = (address: string): string => address.slice(address.lastIndexOf('@') + 1).toLowerCase();
const iso = (ms: number | undefined): string | undefined => (ms ? new Date(ms).toISOString() : undefined);

export interface QueueFilter {
  /** Substring of the return path (case ignored). */
  sender?: string;
  /** Substring of any recipient address (case ignored). */
  recipient?: string;
  /** Destination domain of a pending recipient (exact, case ignored). */
  domain?: string;
  /** Queued at least / at most this many seconds ago. */
  minAge?: number;
  maxAge?: number;
  state?: MessageState;
}

export function matches(env: Envelope, f: QueueFilter, now = Date.now()): boolean {
  if (f.sender !== undefined && !env.sender.toLowerCase().includes(f.sender.toLowerCase())) return false;
  if (f.recipient !== undefined) {
    const want = f.recipient.toLowerCase();
    if (!env.recipients.some((r) => r.address.toLowerCase().includes(want))) return false;
  }
  if (f.domain !== undefined) {
    const want = f.domain.toLowerCase().replace(/^@/, '');
    if (!pendingRecipients(env).some((r) => domainOf(r.address) === want)) return false;
  }
  const age = (now - Date.parse(env.received)) / 1000;
  if (f.minAge !== undefined && age < f.minAge) return false;
  if (f.maxAge !== undefined && age > f.maxAge) return false;
  if (f.state !== undefined && messageState(env) !== f.state) return false;
  return true;
}

/** A message as the console lists and shows it. */
export function summary(env: Envelope, now = Date.now()) {
  return {
    id: env.id,
    state: messageState(env),
    sender: env.sender,
    received: env.received,
    ageSeconds: Math.max(0, Math.round((now - Date.parse(env.received)) / 1000)),
    size: env.size,
    client: env.client,
    service: env.service,
    nextAttempt: iso(env.nextAttempt),
    recipients: env.recipients.map((r) => ({
      address: r.address,
      original: r.original,
      route: r.route.kind === 'local' ? `local ${r.route.mailbox}` : 'remote',
      state: r.state,
      attempts: r.attempts ?? 0,
      /** The last failure: the remote server's reply, or our description of a local/network error. */
      lastReply: r.lastError,
      nextAttempt: r.state === 'pending' ? iso(r.nextAttempt) : undefined,
      notify: r.dsn?.notify,
    })),
  };
}

export interface QueueCounts {
  messages: number;
  byState: Record<MessageState, number>;
  /** Pending recipients (and the messages holding them) per destination domain, most first. */
  byDomain: { domain: string; recipients: number; messages: number }[];
}

export function counts(envelopes: Envelope[]): QueueCounts {
  const byState = Object.fromEntries(MESSAGE_STATES.map((s) => [s, 0])) as Record<MessageState, number>;
  const domains = new Map<string, { recipients: number; messages: Set<string> }>();
  for (const env of envelopes) {
    byState[messageState(env)]++;
    for (const r of pendingRecipients(env)) {
      const d = domainOf(r.address);
      let e = domains.get(d);
      if (!e) domains.set(d, (e = { recipients: 0, messages: new Set() }));
      e.recipients++;
      e.messages.add(env.id);
    }
  }
  const byDomain = [...domains]
    .map(([domain, e]) => ({ domain, recipients: e.recipients, messages: e.messages.size }))
    .sort((a, b) => b.recipients - a.recipients || (a.domain < b.domain ? -1 : 1));
  return { messages: envelopes.length, byState, byDomain };
}
