import type { SessionObserver, MessageOutcome } from '../smtp/context.js';
import type { Reply } from '../smtp/reply.js';
import type { ScriptHooks } from '../script/smtpsvr-hooks.js';
import { ScriptMetrics, LATENCY_BUCKETS, type HookFailure, type HookStats } from '../script/metrics.js';
import type { LiveFeed } from '../admin/live.js';
import type { EventBus } from '../admin/events.js';
import type { ForwardedEvent, WorkerMessage } from './protocol.js';

const FLUSH_MS = 50;
const MAX_BATCH = 500;

/**
 * A worker's session observer: gathers the events the admin console shows and sends them to
 * the primary in batches (one IPC message per 50 ms or 500 events), so a busy worker pays a
 * push per event, not a write.
 */
export class EventForwarder implements SessionObserver {
  private batch: ForwardedEvent[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly send: (m: WorkerMessage) => void) {}

  private push(e: ForwardedEvent): void {
    this.batch.push(e);
    if (this.batch.length >= MAX_BATCH) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), FLUSH_MS);
  }

  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (!this.batch.length) return;
    const events = this.batch;
    this.batch = [];
    this.send({ t: 'events', events });
  }

  opened(s: string, client: { ip: string; port: number; service: string }): void {
    this.push({ k: 'opened', s, client });
  }

  closed(s: string): void {
    this.push({ k: 'closed', s });
  }

  command(s: string, line: string): void {
    this.push({ k: 'command', s, line });
  }

  reply(s: string, r: Reply): void {
    this.push({ k: 'reply', s, r });
  }

  message(s: string, m: MessageOutcome): void {
    this.push({ k: 'message', s, m });
  }

  /** Every script callback of a session as a `hook` event (without the rendered call). */
  traceHooks(hooks: ScriptHooks, s: string): void {
    const previous = hooks.trace;
    hooks.trace = (entry) => {
      previous?.(entry);
      const r = entry.result;
      if (r.kind === 'absent') return;
      this.push({ k: 'hook', s, hook: entry.hook, outcome: r.kind, ms: Math.round(entry.ms * 1000) / 1000, error: r.kind === 'ok' ? undefined : r.message.split('\n')[0] });
    };
  }

  scriptFailure(f: HookFailure): void {
    this.push({ k: 'script-failure', hook: f.hook, kind: f.kind, message: f.message.slice(0, 2000) });
  }
}

/** What a worker's session ids end with on the primary (each worker counts its own). */
export const sessionSuffix = (worker: number): string => `.w${worker}`;

/** Replays a worker's events on the primary's live feed; session ids get the worker's number. */
export function replayEvents(live: LiveFeed, bus: EventBus, worker: number, events: ForwardedEvent[]): void {
  const suffix = sessionSuffix(worker);
  const sid = (s: string): string => `${s}${suffix}`;
  for (const e of events) {
    switch (e.k) {
      case 'opened':
        live.opened(sid(e.s), e.client);
        break;
      case 'closed':
        live.closed(sid(e.s));
        break;
      case 'command':
        live.command(sid(e.s), e.line);
        break;
      case 'reply':
        live.reply(sid(e.s), e.r);
        break;
      case 'message':
        live.message(sid(e.s), e.m);
        break;
      case 'hook':
        bus.publish({ type: 'hook', session: sid(e.s), hook: e.hook, outcome: e.outcome, ms: e.ms, error: e.error });
        break;
      case 'script-failure':
        live.scriptFailure({ hook: e.hook, kind: e.kind, message: e.message });
        break;
    }
  }
}

type Snapshot = { hooks: Record<string, HookStats>; histograms: Record<string, number[]> };

function addInto(into: Snapshot, from: Snapshot): void {
  for (const [hook, s] of Object.entries(from.hooks)) {
    const t = (into.hooks[hook] ??= { calls: 0, errors: 0, stops: 0, totalMs: 0 });
    t.calls += s.calls;
    t.errors += s.errors;
    t.stops += s.stops;
    t.totalMs += s.totalMs;
  }
  for (const [hook, h] of Object.entries(from.histograms)) {
    const t = (into.histograms[hook] ??= new Array<number>(LATENCY_BUCKETS.length + 1).fill(0));
    h.forEach((n, i) => (t[i] += n));
  }
}

/** A worker's script counters, as sent to the primary. */
export function scriptSnapshot(m: ScriptMetrics): Snapshot {
  const hooks = m.snapshot();
  return { hooks, histograms: Object.fromEntries(Object.keys(hooks).map((h) => [h, m.histogram(h)])) };
}

/**
 * The script counters the primary's /metrics shows: its own (relayout.lua runs there), the
 * last report of every live worker, and the final report of every worker gone (so counters
 * never go down when a worker is replaced).
 */
export class ClusterScriptMetrics extends ScriptMetrics {
  private readonly live = new Map<number, Snapshot>();
  private readonly retired: Snapshot = { hooks: {}, histograms: {} };

  constructor(private readonly own: ScriptMetrics) {
    super();
  }

  report(worker: number, s: Snapshot): void {
    this.live.set(worker, s);
  }

  /** The worker is gone: its last report stays counted. */
  retire(worker: number): void {
    const s = this.live.get(worker);
    this.live.delete(worker);
    if (s) addInto(this.retired, s);
  }

  private total(): Snapshot {
    const t: Snapshot = { hooks: {}, histograms: {} };
    addInto(t, scriptSnapshot(this.own));
    addInto(t, this.retired);
    for (const s of this.live.values()) addInto(t, s);
    return t;
  }

  override record(...args: Parameters<ScriptMetrics['record']>): void {
    this.own.record(...args);
  }

  override onFailure(listener: (f: HookFailure) => void): void {
    this.own.onFailure(listener);
  }

  override snapshot(): Record<string, HookStats> {
    return this.total().hooks;
  }

  override histogram(hook: string): number[] {
    return this.total().histograms[hook] ?? new Array<number>(LATENCY_BUCKETS.length + 1).fill(0);
  }
}
