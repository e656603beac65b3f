import type { Envelope } from './envelope.js';
import type { Spool } from './spool.js';

/**
 * The queue as the running server sees it: one authoritative envelope per queued message,
 * changed only through `update`, which runs one change at a time per message and writes the
 * result (or removes the message once no recipient is pending). Local delivery, the relay
 * and the administrator's commands all go through it, so none overwrites another's progress.
 */
export class QueueIndex {
  private readonly envelopes = new Map<string, Envelope>();
  private readonly locks = new Map<string, Promise<void>>();
  private readonly listeners: ((env: Envelope) => void)[] = [];

  constructor(readonly spool: Spool) {}

  /** A committed message joins the index; listeners (the dispatchers) hear of it. */
  add(env: Envelope): void {
    this.envelopes.set(env.id, env);
    for (const l of this.listeners) l(env);
  }

  onAdded(listener: (env: Envelope) => void): void {
    this.listeners.push(listener);
  }

  get(id: string): Envelope | undefined {
    return this.envelopes.get(id);
  }

  list(): Envelope[] {
    return [...this.envelopes.values()];
  }

  get size(): number {
    return this.envelopes.size;
  }

  /**
   * Changes one message under its lock. `change` returns false to skip writing. Returns the
   * envelope after the change, or null when the message is gone (settled or deleted).
   */
  async update(id: string, change: (env: Envelope) => boolean | void | Promise<boolean | void>): Promise<Envelope | null> {
    const prev = this.locks.get(id) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((res) => (release = res));
    const chained = prev.then(() => mine);
    this.locks.set(id, chained);
    await prev;
    try {
      const env = this.envelopes.get(id);
      if (!env) return null;
      if ((await change(env)) === false) return env;
      if (env.recipients.some((r) => r.state === 'pending')) {
        await this.spool.update(env);
        return env;
      }
      this.envelopes.delete(id);
      await this.spool.remove(id);
      return null;
    } finally {
      release();
      if (this.locks.get(id) === chained) this.locks.delete(id);
    }
  }

  /** Removes a message whatever its state (`moonpost queue delete`). */
  async delete(id: string): Promise<boolean> {
    return (
      (await this.update(id, (env) => {
        for (const r of env.recipients) if (r.state === 'pending') r.state = 'failed';
      })) === null && !this.envelopes.has(id)
    );
  }
}
