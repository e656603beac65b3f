import type { SmtpClient } from './smtp-client.js';

export interface PoolOptions {
  /** Most connections open at once to one destination (in use, opening or idle). */
  maxPerDestination: number;
  /** How long an idle connection is kept for the next transaction before QUIT (default 10 s). */
  idleTimeoutMs?: number;
}

/** A connection lent out by the pool; give it back with `release` exactly once. */
export interface Lease {
  readonly client: SmtpClient;
  readonly destination: string;
  /** The connection served an earlier lease (and passed an RSET before this one). */
  readonly reused: boolean;
  /** Back to the pool for reuse (`reuse` false, or a closed client: QUIT and forget). */
  release(reuse?: boolean): void;
}

interface Idle {
  client: SmtpClient;
  timer: NodeJS.Timeout;
}

interface Destination {
  /** Connections lent out or being opened. */
  active: number;
  idle: Idle[];
  waiters: (() => void)[];
}

/**
 * Limits and reuses SMTP client connections per destination (a host:port, an MX name: the
 * caller's key). `acquire` takes an idle connection when there is one (RSET first: a refused
 * or dead one is dropped and the next tried), else opens one while under the limit, else
 * waits its turn. Idle connections are closed with QUIT after the idle timeout.
 */
export class ClientPool {
  private readonly dests = new Map<string, Destination>();
  private readonly idleMs: number;
  private closing = false;
  private readonly quitting = new Set<Promise<void>>();
  private readonly watched = new WeakSet<SmtpClient>();

  constructor(private readonly opts: PoolOptions) {
    if (!(opts.maxPerDestination >= 1)) throw new Error(`client pool: maxPerDestination must be at least 1 (got ${opts.maxPerDestination})`);
    this.idleMs = opts.idleTimeoutMs ?? 10_000;
  }

  private dest(key: string): Destination {
    let d = this.dests.get(key);
    if (!d) {
      d = { active: 0, idle: [], waiters: [] };
      this.dests.set(key, d);
    }
    return d;
  }

  private forget(key: string, d: Destination): void {
    if (!d.active && !d.idle.length && !d.waiters.length) this.dests.delete(key);
  }

  private wakeOne(d: Destination): void {
    d.waiters.shift()?.();
  }

  private quit(client: SmtpClient): void {
    const p = client.quit().finally(() => this.quitting.delete(p));
    this.quitting.add(p);
  }

  /** A connection to `destination`, opened with `open` when none is idle and the limit allows. */
  async acquire(destination: string, open: () => Promise<SmtpClient>): Promise<Lease> {
    const d = this.dest(destination);
    if (d.waiters.length && !this.closing) await new Promise<void>((res) => d.waiters.push(res));
    for (;;) {
      if (this.closing) throw new Error(`client pool: closed (acquiring a connection to ${destination})`);
      const idle = d.idle.pop();
      if (idle) {
        clearTimeout(idle.timer);
        d.active++;
        try {
          await idle.client.rset();
          return this.lease(destination, d, idle.client, true);
        } catch {
          idle.client.close();
          d.active--;
          continue;
        }
      }
      if (d.active < this.opts.maxPerDestination) {
        d.active++;
        try {
          return this.lease(destination, d, await open(), false);
        } catch (err) {
          d.active--;
          this.wakeOne(d);
          this.forget(destination, d);
          throw err;
        }
      }
      await new Promise<void>((res) => d.waiters.push(res));
    }
  }

  private lease(destination: string, d: Destination, client: SmtpClient, reused: boolean): Lease {
    let done = false;
    if (!this.watched.has(client)) {
      this.watched.add(client);
      // A connection the server closes while idle leaves the pool at once.
      client.onClose(() => {
        const i = d.idle.findIndex((x) => x.client === client);
        if (i < 0) return;
        clearTimeout(d.idle[i].timer);
        d.idle.splice(i, 1);
        this.forget(destination, d);
      });
    }
    return {
      client,
      destination,
      reused,
      release: (reuse = true) => {
        if (done) return;
        done = true;
        d.active--;
        if (reuse && !client.closed && !this.closing) {
          const timer = setTimeout(() => {
            const i = d.idle.findIndex((x) => x.client === client);
            if (i >= 0) d.idle.splice(i, 1);
            this.quit(client);
            this.forget(destination, d);
          }, this.idleMs);
          timer.unref();
          d.idle.push({ client, timer });
        } else if (!client.closed) {
          this.quit(client);
        }
        this.wakeOne(d);
        this.forget(destination, d);
      },
    };
  }

  /** Runs `fn` on a pooled connection; the connection is reused unless `fn` throws. */
  async use<T>(destination: string, open: () => Promise<SmtpClient>, fn: (client: SmtpClient) => Promise<T>): Promise<T> {
    const lease = await this.acquire(destination, open);
    try {
      const r = await fn(lease.client);
      lease.release(true);
      return r;
    } catch (err) {
      lease.release(false);
      throw err;
    }
  }

  stats(destination: string): { active: number; idle: number; waiting: number } {
    const d = this.dests.get(destination);
    return { active: d?.active ?? 0, idle: d?.idle.length ?? 0, waiting: d?.waiters.length ?? 0 };
  }

  /** QUITs idle connections, fails waiting and later acquires; leased ones QUIT when released. */
  async close(): Promise<void> {
    this.closing = true;
    for (const d of this.dests.values()) {
      for (const idle of d.idle.splice(0)) {
        clearTimeout(idle.timer);
        this.quit(idle.client);
      }
      for (const w of d.waiters.splice(0)) w();
    }
    await Promise.all([...this.quitting]);
  }
}
