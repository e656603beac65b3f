import type { Envelope } from '../queue/envelope.js';
import { QueueIndex } from '../queue/queue-index.js';

/**
 * The primary's queue index. It remembers every message it has held until its files are gone
 * (not only until it leaves the index: settling removes the entry first and unlinks the
 * envelope after), so a spool rescan can tell a message that was never handed over from one
 * that was delivered a moment ago, and adds each message at most once.
 */
export class TrackedQueueIndex extends QueueIndex {
  private readonly known = new Set<string>();

  /** True when `add` took the message; false when it is already held or being settled. */
  offer(env: Envelope): boolean {
    if (this.known.has(env.id)) return false;
    this.add(env);
    return true;
  }

  override add(env: Envelope): void {
    this.known.add(env.id);
    super.add(env);
  }

  /** Held now, or settled but with its files not yet removed. */
  knows(id: string): boolean {
    return this.known.has(id);
  }

  override async update(...args: Parameters<QueueIndex['update']>): Promise<Envelope | null> {
    const [id] = args;
    const env = await super.update(...args);
    // Null with no entry: settled and both files unlinked (or never held).
    if (env === null && !this.get(id)) this.known.delete(id);
    return env;
  }
}
