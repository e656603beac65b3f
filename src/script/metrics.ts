/** Per-hook counters kept in the process, for logs now and the metrics endpoint later. */
export interface HookStats {
  calls: number;
  errors: number;
  stops: number;
  totalMs: number;
}

export class ScriptMetrics {
  readonly hooks = new Map<string, HookStats>();

  record(hook: string, outcome: 'ok' | 'absent' | 'error' | 'stopped', ms: number): void {
    if (outcome === 'absent') return;
    let s = this.hooks.get(hook);
    if (!s) {
      s = { calls: 0, errors: 0, stops: 0, totalMs: 0 };
      this.hooks.set(hook, s);
    }
    s.calls++;
    s.totalMs += ms;
    if (outcome === 'error') s.errors++;
    if (outcome === 'stopped') s.stops++;
  }

  snapshot(): Record<string, HookStats> {
    return Object.fromEntries([...this.hooks].map(([k, v]) => [k, { ...v }]));
  }
}
