/**
 * Failed AUTH attempts per client address, across connections, so a password cannot be
 * guessed at speed: each failure beyond `free` delays the next reply longer, and past
 * `block` failures the address gets 421 until its failures age out.
 */
export class AuthThrottle {
  private readonly failures = new Map<string, { count: number; last: number }>();

  constructor(
    private readonly opts = { free: 2, block: 10, baseDelayMs: 1000, maxDelayMs: 8000, forgetMs: 15 * 60_000 },
    private readonly now: () => number = Date.now,
  ) {}

  private entry(ip: string): { count: number; last: number } | undefined {
    const e = this.failures.get(ip);
    if (e && this.now() - e.last > this.opts.forgetMs) {
      this.failures.delete(ip);
      return undefined;
    }
    return e;
  }

  /** Records a failure; returns how long to wait before answering it. */
  fail(ip: string): number {
    const e = this.entry(ip) ?? { count: 0, last: 0 };
    e.count++;
    e.last = this.now();
    this.failures.set(ip, e);
    if (this.failures.size > 100_000) this.prune();
    return this.delay(e.count);
  }

  private delay(count: number): number {
    const over = count - this.opts.free;
    return over <= 0 ? 0 : Math.min(this.opts.maxDelayMs, this.opts.baseDelayMs * 2 ** (over - 1));
  }

  /** True when the address has failed too often to be allowed another try now. */
  blocked(ip: string): boolean {
    return (this.entry(ip)?.count ?? 0) >= this.opts.block;
  }

  succeed(ip: string): void {
    this.failures.delete(ip);
  }

  private prune(): void {
    for (const ip of [...this.failures.keys()]) this.entry(ip);
  }
}
