/** Per-hook counters kept in the process, for logs and the metrics endpoint. */
export interface HookStats {
  calls: number;
  errors: number;
  stops: number;
  totalMs: number;
}

/** Upper bounds (seconds) of the hook latency histogram's buckets; a last one is +Inf. */
export const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** A callback that failed: a runtime error, or a stop over its budget (S4). */
export interface HookFailure {
  hook: string;
  kind: 'error' | 'stopped';
  /** Lua's message, e.g. `SMTPSVR.LUA:12: attempt to index a nil value` (with a traceback). */
  message: string;
}

export class ScriptMetrics {
  readonly hooks = new Map<string, HookStats>();
  /** Per hook: calls per latency bucket (not cumulative), the last entry for over 5 s. */
  private readonly latency = new Map<string, number[]>();
  private readonly failureListeners: ((f: HookFailure) => void)[] = [];

  record(hook: string, outcome: 'ok' | 'absent' | 'error' | 'stopped', ms: number, message?: string): void {
    if (outcome === 'absent') return;
    let s = this.hooks.get(hook);
    let buckets = this.latency.get(hook);
    if (!s || !buckets) {
      s = { calls: 0, errors: 0, stops: 0, totalMs: 0 };
      buckets = new Array<number>(LATENCY_BUCKETS.length + 1).fill(0);
      this.hooks.set(hook, s);
      this.latency.set(hook, buckets);
    }
    s.calls++;
    s.totalMs += ms;
    const seconds = ms / 1000;
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]) i++;
    buckets[i]++;
    if (outcome === 'error' || outcome === 'stopped') this.failed(hook, outcome, message ?? '');
  }

  /**
   * A failure inside calls already counted (recordMany): one more error, heard by the listeners
   * unless `quiet` (the many after the first few of a batch of lines).
   */
  failed(hook: string, kind: 'error' | 'stopped', message: string, quiet = false): void {
    const s = this.hooks.get(hook);
    if (!s) return;
    if (kind === 'error') s.errors++;
    else s.stops++;
    if (quiet) return;
    const failure: HookFailure = { hook, kind, message };
    for (const l of this.failureListeners) l(failure);
  }

  /** `n` calls of `hook` with one outcome, `ms` each (a batch of message lines). */
  recordMany(hook: string, outcome: 'ok' | 'absent' | 'error' | 'stopped', ms: number, n: number): void {
    if (outcome !== 'ok' || n <= 1) {
      for (let i = 0; i < n; i++) this.record(hook, outcome, ms);
      return;
    }
    this.record(hook, outcome, ms);
    const s = this.hooks.get(hook)!;
    const buckets = this.latency.get(hook)!;
    const seconds = ms / 1000;
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]) i++;
    s.calls += n - 1;
    s.totalMs += ms * (n - 1);
    buckets[i] += n - 1;
  }

  /** Hears of every failed callback (the admin console's recent script errors). */
  onFailure(listener: (f: HookFailure) => void): void {
    this.failureListeners.push(listener);
  }

  snapshot(): Record<string, HookStats> {
    return Object.fromEntries([...this.hooks].map(([k, v]) => [k, { ...v }]));
  }

  /** Calls per latency bucket of LATENCY_BUCKETS (not cumulative; the last is over the last bound). */
  histogram(hook: string): number[] {
    return [...(this.latency.get(hook) ?? new Array<number>(LATENCY_BUCKETS.length + 1).fill(0))];
  }
}
