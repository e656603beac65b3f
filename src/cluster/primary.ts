import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import { Counter, Gauge, type Metric, type Registry } from 'prom-client';
import type { Config } from '../config/schema.js';
import { newQueueId } from '../queue/spool.js';
import type { ScriptHost } from '../script/script-host.js';
import { MoonpostServer, type BoundService } from '../server.js';
import { ClusterScriptMetrics, replayEvents, sessionSuffix } from './forward.js';
import { isWorkerMessage, queueIdTag, type PrimaryMessage, type WorkerMessage } from './protocol.js';
import { TrackedQueueIndex } from './tracked-queue.js';
import { rescanSpool } from './rescan.js';

/** Restart delays after a crash: doubling from the first to the last, reset by a long enough life. */
const BACKOFF_FIRST_MS = 250;
const BACKOFF_MAX_MS = 30_000;
const STABLE_AFTER_MS = 30_000;
const START_TIMEOUT_MS = 60_000;

interface Slot {
  id: number;
  worker: Worker | null;
  tag: string | null;
  /** Crashes in a row, each within STABLE_AFTER_MS of its start. */
  failures: number;
  startedAt: number;
  restart: NodeJS.Timeout | null;
  /** The worker was stopped for drawing a queue id tag in use: start another at once. */
  retag: boolean;
  /** Resolves once the worker has exited, its channel is closed and its spool files are rescanned. */
  gone: Promise<void> | null;
}

type Ready = { ok: true; bound: BoundService[] } | { ok: false; error: string };

/**
 * The primary of several SMTP worker processes. It runs everything but the SMTP listeners:
 * queue recovery and index, local delivery retries, the relay, the control socket and the
 * admin API. Workers accept mail, commit it to the spool and make the first attempt at local
 * mailboxes; a message they did not settle reaches this process by an IPC hand-off, or, when
 * its worker died before the hand-off was read, by a rescan of the dead worker's spool files
 * once its channel is closed. Each message is added once (TrackedQueueIndex), so it has one
 * owner at a time; a mailbox reached before a worker died keeps one copy (maildirName).
 */
export class ClusterPrimary {
  readonly server: MoonpostServer;
  private readonly queue: TrackedQueueIndex;
  private readonly slots: Slot[] = [];
  private readonly ownTag = queueIdTag(newQueueId());
  private stopping = false;
  private bound: BoundService[] = [];
  private scriptMetrics: ClusterScriptMetrics | null = null;
  private readonly metrics = {
    live: new Gauge({
      name: 'moonpost_workers',
      help: 'SMTP worker processes running',
      registers: [],
      collect: (): void => this.liveGauge(),
    }),
    restarts: new Counter({ name: 'moonpost_worker_restarts_total', help: 'SMTP workers started again after they exited unexpectedly', registers: [] }),
    connections: new Counter({ name: 'moonpost_worker_connections_total', help: 'SMTP connections accepted, by worker', labelNames: ['worker'], registers: [] }),
    handoffs: new Counter({ name: 'moonpost_worker_handoffs_total', help: 'Committed messages handed to the primary, by worker', labelNames: ['worker'], registers: [] }),
    rescued: new Counter({
      name: 'moonpost_worker_rescued_total',
      help: 'Committed messages of a dead worker found in the spool, not handed over',
      registers: [],
    }),
  };

  private liveGauge(): void {
    this.metrics.live.set(this.slots.filter((s) => s.worker).length);
  }

  constructor(
    readonly config: Config,
    readonly log: Logger,
    readonly workers: number,
  ) {
    let queue!: TrackedQueueIndex;
    this.server = new MoonpostServer(config, log, {
      smtp: false,
      queueIndex: (spool) => (queue = new TrackedQueueIndex(spool)),
      extraMetrics: (registry: Registry) => {
        for (const m of Object.values(this.metrics) as Metric[]) registry.registerMetric(m);
      },
      metricsScripts: (scripts: ScriptHost) => {
        this.scriptMetrics = new ClusterScriptMetrics(scripts.metrics);
        return Object.create(scripts, { metrics: { value: this.scriptMetrics } }) as ScriptHost;
      },
    });
    this.queue = queue;
  }

  /** Recovers the queue and starts delivery and the admin side, then the workers; resolves once all listen. */
  async start(): Promise<BoundService[]> {
    await this.server.start();
    // Read by the first fork. With "kernel", idle workers wait in accept on the one socket and
    // a busy one does not: the less loaded takes the connection, and the primary's per-connection
    // IPC (measured: 0.2 ms of its CPU, and more in the workers, per connection) goes away.
    cluster.schedulingPolicy = this.config.workerAccept === 'kernel' ? cluster.SCHED_NONE : cluster.SCHED_RR;
    for (let id = 1; id <= this.workers; id++) {
      this.slots.push({ id, worker: null, tag: null, failures: 0, startedAt: 0, restart: null, retag: false, gone: null });
    }
    const results = await Promise.all(this.slots.map((s) => this.fork(s)));
    const failed = results.find((r): r is Extract<Ready, { ok: false }> => !r.ok);
    if (failed) {
      await this.stop().catch(() => undefined);
      throw new Error(failed.error);
    }
    this.bound = (results[0] as Extract<Ready, { ok: true }>).bound;
    return this.bound;
  }

  private send(worker: Worker, m: PrimaryMessage): void {
    if (worker.isConnected()) worker.send(m);
  }

  /** Starts the worker of a slot; resolves when it listens or has failed to. */
  private fork(slot: Slot): Promise<Ready> {
    const worker = cluster.fork({ MOONPOST_WORKER: String(slot.id) });
    slot.worker = worker;
    slot.tag = null;
    slot.startedAt = Date.now();
    const log = this.log.child({ worker: slot.id, pid: worker.process.pid });
    let settle!: (r: Ready) => void;
    const ready = new Promise<Ready>((res) => (settle = res));
    const timer = setTimeout(() => {
      settle({ ok: false, error: `worker ${slot.id} did not start within ${START_TIMEOUT_MS / 1000} s` });
      worker.process.kill('SIGKILL');
    }, START_TIMEOUT_MS);
    timer.unref();

    worker.on('message', (m: unknown) => {
      if (!isWorkerMessage(m)) return;
      this.onMessage(slot, worker, m, log, settle);
      if (m.t === 'ready' || m.t === 'failed') clearTimeout(timer);
    });
    worker.on('error', (err) => log.warn({ err: err.message }, 'worker channel error'));
    // 'close' comes once the process has exited and its IPC channel has been read to the end
    // ('disconnect' may never come: Node holds it back while a connection handle sent to the
    // worker awaits its acknowledgement). The messages of the last read are emitted on the
    // next tick, so the rescan waits a turn for them.
    const closed = new Promise<{ code: number | null; signal: string | null }>((res) =>
      worker.process.once('close', (code, signal) => setImmediate(() => res({ code, signal }))),
    );
    slot.gone = closed.then(async ({ code, signal }) => {
      clearTimeout(timer);
      if (slot.worker === worker) slot.worker = null;
      if (slot.retag && !this.stopping) {
        slot.retag = false;
        void this.fork(slot).then(settle);
        return;
      }
      settle({ ok: false, error: `worker ${slot.id} exited at start (${signal ?? `code ${code}`})` });
      this.scriptMetrics?.retire(slot.id);
      this.forgetSessions(slot.id);
      const expected = this.stopping && (code === 0 || code === null);
      log[expected ? 'info' : 'error']({ code, signal }, 'worker exited');
      // Nothing more can come from it: what it committed and did not hand over is in the spool.
      if (slot.tag) await this.rescan(slot.tag, log);
      if (!this.stopping) this.scheduleRestart(slot, log);
    });
    return ready;
  }

  private onMessage(slot: Slot, worker: Worker, m: WorkerMessage, log: Logger, settle: (r: Ready) => void): void {
    switch (m.t) {
      case 'queued':
        this.metrics.handoffs.inc({ worker: slot.id });
        if (!this.queue.offer(m.env)) log.debug({ queueId: m.env.id }, 'hand-off of a message already queued');
        break;
      case 'events': {
        const live = this.server.liveFeed;
        if (live) replayEvents(live, this.server.events, slot.id, m.events);
        const opened = m.events.filter((e) => e.k === 'opened').length;
        if (opened) this.metrics.connections.inc({ worker: slot.id }, opened);
        break;
      }
      case 'stats': {
        this.scriptMetrics?.report(slot.id, { hooks: m.hooks, histograms: m.histograms });
        const counters = this.server.dispatcher.counters;
        counters.delivered += m.local.delivered;
        counters.deferred += m.local.deferred;
        break;
      }
      case 'hello': {
        // Queue ids carry their process's random tag; a dead worker's files are found by it,
        // so two live processes must not share one.
        const taken = m.tag === this.ownTag || this.slots.some((s) => s !== slot && s.tag === m.tag);
        if (taken) {
          log.warn({ tag: m.tag }, 'worker drew a queue id tag in use; starting another');
          slot.retag = true;
          worker.process.kill('SIGKILL');
          return;
        }
        slot.tag = m.tag;
        this.send(worker, { t: 'start', worker: slot.id, config: this.config, forward: !!this.server.liveFeed });
        break;
      }
      case 'ready':
        log.info({ services: m.bound.map((b) => `${b.address}:${b.port}`) }, 'worker ready');
        settle({ ok: true, bound: m.bound });
        break;
      case 'failed':
        settle({ ok: false, error: m.error });
        break;
      case 'bye':
        break;
    }
  }

  /** A dead worker's sessions are over: the live view and the open-connections gauge drop them. */
  private forgetSessions(worker: number): void {
    const live = this.server.liveFeed;
    if (!live) return;
    const suffix = sessionSuffix(worker);
    for (const c of live.connections()) if (c.session.endsWith(suffix)) live.closed(c.session);
  }

  private scheduleRestart(slot: Slot, log: Logger): void {
    const lived = Date.now() - slot.startedAt;
    slot.failures = lived >= STABLE_AFTER_MS ? 0 : slot.failures + 1;
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** Math.max(0, slot.failures - 1));
    log.warn({ delayMs: delay, failures: slot.failures }, 'restarting worker');
    slot.restart = setTimeout(() => {
      slot.restart = null;
      if (this.stopping) return;
      this.metrics.restarts.inc();
      void this.fork(slot).then((r) => {
        if (!r.ok) log.error({ err: r.error }, 'worker did not start');
      });
    }, delay);
  }

  private async rescan(tag: string, log: Logger): Promise<void> {
    try {
      const { rescued, removed } = await rescanSpool(this.server.spool, this.queue, tag);
      if (rescued.length) this.metrics.rescued.inc(rescued.length);
      if (rescued.length || removed.length) log.warn({ rescued, removed }, 'spool rescan after a worker exit');
    } catch (err) {
      log.error({ err: (err as Error).message, dir: this.server.spool.dir }, 'spool rescan failed');
    }
  }

  /** SIGHUP: the primary's scripts (relayout.lua) and every worker's. */
  reload(): void {
    this.log.info('SIGHUP: reloading scripts');
    void this.server.scripts.reload();
    for (const s of this.slots) if (s.worker) this.send(s.worker, { t: 'reload' });
  }

  /** Graceful stop: every worker drains its sessions and exits, then delivery stops. */
  async stop(deadlineMs = this.config.limits.timeouts.shutdown * 1000): Promise<void> {
    this.stopping = true;
    for (const s of this.slots) {
      if (s.restart) clearTimeout(s.restart);
      s.restart = null;
      if (s.worker) this.send(s.worker, { t: 'stop', deadlineMs });
    }
    const killer = setTimeout(() => {
      for (const s of this.slots) {
        if (!s.worker) continue;
        this.log.error({ worker: s.id }, 'worker did not stop in time; killing it');
        s.worker.process.kill('SIGKILL');
      }
    }, deadlineMs + 5000);
    await Promise.all(this.slots.map((s) => s.gone));
    clearTimeout(killer);
    await this.server.stop(deadlineMs);
  }
}
