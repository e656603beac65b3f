/** What the admin console's live view shows, as published by the SMTP side and the scripts. */
export type LiveEventBody =
  | { type: 'connect'; session: string; ip: string; port: number; service: string }
  | { type: 'disconnect'; session: string; ip: string; ms: number }
  /** One command and the reply it got (the greeting has command `(connect)`; AUTH data is never shown). */
  | { type: 'command'; session: string; command: string; reply: string }
  /** One SMTPSVR.LUA callback; `call` (arguments and results) only while someone watches live. */
  | { type: 'hook'; session: string; hook: string; outcome: 'ok' | 'error' | 'stopped'; ms: number; call?: string; error?: string }
  /** A finished message: `queued`, `discarded...`, `refused: <why>` or `deferred`. */
  | { type: 'message'; session: string; queueId: string; outcome: string; from: string; to: string[]; size: number; reply: string }
  /** A script failed: `file`/`line` from Lua's message where it names them. */
  | { type: 'script-error'; script: string | null; line: number | null; hook: string; kind: 'error' | 'stopped'; message: string };

export type LiveEventType = LiveEventBody['type'];
export type LiveEvent = LiveEventBody & { seq: number; time: string };

/** A fixed-size ring of the most recent items; older ones are overwritten. */
export class Ring<T> {
  private readonly items: (T | undefined)[];
  private next = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    this.items = new Array<T | undefined>(capacity);
  }

  push(item: T): void {
    this.items[this.next] = item;
    this.next = (this.next + 1) % this.capacity;
    if (this.count < this.capacity) this.count++;
  }

  /** Oldest first. */
  toArray(): T[] {
    const out: T[] = [];
    const start = (this.next - this.count + this.capacity) % this.capacity;
    for (let i = 0; i < this.count; i++) out.push(this.items[(start + i) % this.capacity] as T);
    return out;
  }

  get size(): number {
    return this.count;
  }
}

/**
 * The in-process event bus of the admin console: publishers (listener, sessions, scripts)
 * call `publish`; subscribers (server-sent event streams, metrics, per-minute stats) hear every
 * event synchronously. Memory is bounded: the last `capacity` events and, apart, the last
 * `errorCapacity` script errors are kept for clients that connect later.
 */
export class EventBus {
  private seq = 0;
  private readonly recentEvents: Ring<LiveEvent>;
  private readonly recentErrors: Ring<LiveEvent>;
  private readonly subscribers = new Set<(e: LiveEvent) => void>();
  /** Subscribers that want the detailed stream (open live views), as opposed to counters. */
  private watchers = 0;

  constructor(capacity = 2000, errorCapacity = 200) {
    this.recentEvents = new Ring(capacity);
    this.recentErrors = new Ring(errorCapacity);
  }

  publish(body: LiveEventBody): LiveEvent {
    const event = { ...body, seq: ++this.seq, time: new Date().toISOString() } as LiveEvent;
    this.recentEvents.push(event);
    if (event.type === 'script-error') this.recentErrors.push(event);
    for (const s of this.subscribers) {
      try {
        s(event);
      } catch {
        /* a broken subscriber must not break the session that published */
      }
    }
    return event;
  }

  /** Hears every event; `watch` marks a live view (hook call details are rendered while any is open). */
  subscribe(fn: (e: LiveEvent) => void, watch = false): () => void {
    // A fresh wrapper per subscription, so the same function may subscribe twice.
    const wrapped = (e: LiveEvent): void => fn(e);
    this.subscribers.add(wrapped);
    if (watch) this.watchers++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.subscribers.delete(wrapped);
      if (watch) this.watchers--;
    };
  }

  get watched(): boolean {
    return this.watchers > 0;
  }

  get lastSeq(): number {
    return this.seq;
  }

  /** Recent events after `since` (a seq), oldest first, optionally of some types only. */
  recent(since = 0, types?: Set<string>): LiveEvent[] {
    return this.recentEvents.toArray().filter((e) => e.seq > since && (!types || types.has(e.type)));
  }

  /** Recent script errors, oldest first (kept apart so a busy server does not push them out). */
  errors(): LiveEvent[] {
    return this.recentErrors.toArray();
  }
}
