import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Config } from './config/schema.js';
import { Directory } from './policy/directory.js';
import { NetworkList } from './policy/cidr.js';
import { Spool } from './queue/spool.js';
import { MaildirDelivery } from './delivery/maildir.js';
import { LocalDispatcher } from './delivery/local-dispatcher.js';
import { DeliverNow } from './delivery/deliver-now.js';
import { QueueIndex } from './queue/queue-index.js';
import { Relay } from './delivery/relay/relay.js';
import { listenControl } from './admin/control-socket.js';
import { bouncer, runQueueOp, type QueueRequest, type QueueResponse } from './admin/queue-ops.js';
import { EventBus } from './admin/events.js';
import { LiveFeed } from './admin/live.js';
import { MinuteStats } from './admin/stats.js';
import { ScriptFiles } from './admin/script-files.js';
import { AdminHttp } from './admin/http/server.js';
import { createMetrics } from './admin/http/metrics.js';
import type { Server } from 'node:net';
import type { Registry } from 'prom-client';
import { ConnectionLimiter, Listener } from './smtp/listener.js';
import type { Envelope } from './queue/envelope.js';
import type { SessionObserver } from './smtp/context.js';
import type { ScriptHooks } from './script/smtpsvr-hooks.js';
import { DirSyncers } from './util/fsync.js';
import { createLogger } from './log.js';
import { ScriptHost } from './script/script-host.js';
import { policyServices } from './policy/services.js';

export interface BoundService {
  id: number;
  name: string;
  address: string;
  port: number;
}

/** How a process of a multi-process server differs from the single-process default. */
export interface ServerOptions {
  /** Open the SMTP listeners (false in the primary of several workers: the workers accept). */
  smtp?: boolean;
  /** The queue index (the primary's tracks settled messages for its spool rescans). */
  queueIndex?: (spool: Spool) => QueueIndex;
  /** Metrics the admin API adds to its registry (the primary's per-worker counters). */
  extraMetrics?: (registry: Registry) => void;
  /** The script host as the metrics see it (the primary's adds its workers' counters). */
  metricsScripts?: (scripts: ScriptHost) => ScriptHost;
}

/** What the SMTP listeners of one process need from the rest of it. */
export interface SmtpSide {
  config: Config;
  log: Logger;
  spool: Spool;
  directory: Directory;
  scripts: ScriptHost;
  shared: ReturnType<typeof policyServices>;
  /** A message was committed to the spool. */
  onQueued(env: Envelope): void;
  /** Local mailboxes written before the 250 (see DeliverNow). */
  deliverNow: DeliverNow;
  /** Hears sessions (the admin console), when set. */
  observer?: SessionObserver;
  /** Chains a trace onto a session's script hooks (the admin console), when set. */
  traceHooks?(hooks: ScriptHooks, session: string): void;
}

/** Opens one listener per configured service. Connection limits count within this process. */
export async function startListeners(side: SmtpSide): Promise<{ listeners: Listener[]; bound: BoundService[] }> {
  const { config } = side;
  const limiter = new ConnectionLimiter(config.limits.connections, config.limits.connectionsPerIp);
  const relayNetworks = new NetworkList(config.relay.networks);
  const listeners: Listener[] = [];
  const bound: BoundService[] = [];
  try {
    for (const service of config.services) {
      const listener = new Listener(
        {
          config,
          service,
          directory: side.directory,
          relayNetworks,
          proxyTrusted: new NetworkList(service.proxyTrusted),
          ...side.shared,
          spool: side.spool,
          log: side.log,
          onQueued: (env) => side.onQueued(env),
          deliverNow: side.deliverNow,
          hooksFor: (policy, facts, log) => {
            const hooks = side.scripts.sessionHooks(policy, facts, log);
            if (hooks && side.traceHooks) side.traceHooks(hooks, facts().sessionId);
            return hooks;
          },
          observer: side.observer,
        },
        limiter,
      );
      const addr = await listener.listen();
      listeners.push(listener);
      bound.push({ id: service.id, name: service.name, ...addr });
    }
  } catch (err) {
    for (const l of listeners) l.stopAccepting();
    throw err;
  }
  return { listeners, bound };
}

/**
 * Graceful end of the SMTP side: no new connections; idle sessions get 421 now, busy ones when
 * their transaction ends or at the deadline.
 */
export async function drainListeners(listeners: Listener[], deadlineMs: number): Promise<void> {
  for (const l of listeners) l.stopAccepting();
  const conns = listeners.flatMap((l) => [...l.connections]);
  for (const c of conns) c.session.drain();
  const all = Promise.all(conns.map((c) => c.done));
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    all.then(() => false),
    new Promise<boolean>((res) => (timer = setTimeout(() => res(true), deadlineMs))),
  ]);
  clearTimeout(timer);
  if (timedOut) {
    for (const c of listeners.flatMap((l) => [...l.connections])) c.forceClose();
    await all;
  }
}

/** The whole MTA: listeners, queue, local delivery. `start` recovers the queue first. */
export class MoonpostServer {
  readonly log: Logger;
  readonly spool: Spool;
  readonly directory: Directory;
  readonly dispatcher: LocalDispatcher;
  private readonly deliverNow: DeliverNow;
  readonly queue: QueueIndex;
  readonly relay: Relay;
  private readonly shared: ReturnType<typeof policyServices>;
  private control: Server | null = null;
  readonly mailRoot: string;
  readonly scripts: ScriptHost;
  private readonly listeners: Listener[] = [];
  bound: BoundService[] = [];
  /** The admin console's event bus (connections, commands, hook calls, messages, script errors). */
  readonly events = new EventBus();
  /** Feeds the bus; only with the admin API on, so a server without it pays nothing. */
  private live: LiveFeed | null = null;
  private adminHttp: AdminHttp | null = null;
  private stopAdmin: (() => void)[] = [];
  /** Where the admin API listens, once started (null when it is off). */
  adminAddress: { address: string; port: number } | null = null;

  constructor(
    readonly config: Config,
    log?: Logger,
    private readonly options: ServerOptions = {},
  ) {
    this.log = log ?? createLogger(config.log.level);
    this.spool = new Spool(config.dataDir, config.queue.fsync);
    this.directory = new Directory(config);
    this.mailRoot = join(config.dataDir, 'mail');
    const maildir = new MaildirDelivery(this.mailRoot, new DirSyncers(config.queue.fsync), config.queue.fsync);
    this.scripts = new ScriptHost(config, this.log);
    this.queue = options.queueIndex ? options.queueIndex(this.spool) : new QueueIndex(this.spool);
    this.shared = policyServices(config);
    this.relay = new Relay(config, this.queue, this.scripts, this.shared.dns, this.shared.batv, this.directory, this.log.child({ part: 'relay' }));
    this.dispatcher = new LocalDispatcher(this.queue, maildir, this.log.child({ part: 'delivery' }), (env, outcomes) => this.relay.report(env, outcomes));
    this.deliverNow = new DeliverNow(maildir, this.dispatcher.counters);
    this.queue.onAdded((env) => this.dispatcher.enqueue(env));
  }

  async start(): Promise<BoundService[]> {
    await this.spool.init();
    await mkdir(this.mailRoot, { recursive: true });
    await this.scripts.start();
    const { envelopes, removed } = await this.spool.recover();
    if (removed.length) this.log.info({ removed }, 'removed unfinished queue files');
    if (envelopes.length) this.log.info({ count: envelopes.length }, 'recovered queued messages');
    // A restart is a retry: what waited for a backoff is tried again now.
    for (const env of envelopes) {
      for (const r of env.recipients) if (r.state === 'pending') r.nextAttempt = undefined;
      this.queue.add({ ...env, nextAttempt: 0 });
    }
    this.relay.start();
    this.control = await listenControl(join(this.config.dataDir, 'control.sock'), (req) => this.queueOp(req));
    if (this.config.admin?.enabled) {
      this.live = new LiveFeed(this.events);
      const live = this.live;
      this.scripts.metrics.onFailure((f) => live.scriptFailure(f));
    }

    if (this.options.smtp !== false) {
      const live = this.live;
      const { listeners, bound } = await startListeners({
        config: this.config,
        log: this.log,
        spool: this.spool,
        directory: this.directory,
        scripts: this.scripts,
        shared: this.shared,
        onQueued: (env) => this.queue.add(env),
        deliverNow: this.deliverNow,
        observer: live ?? undefined,
        traceHooks: live ? (hooks, session) => live.traceHooks(hooks, session) : undefined,
      });
      this.listeners.push(...listeners);
      this.bound.push(...bound);
    }
    if (this.live) await this.startAdmin(this.live);
    return this.bound;
  }

  /** The queue commands of `moonpost queue ...` and the admin API, applied to the running queue. */
  queueOp(req: QueueRequest): Promise<QueueResponse> {
    const bounce = bouncer(this.queue, {
      schedule: this.config.delivery.retry,
      counters: this.relay.counters,
      log: this.log.child({ part: 'admin' }),
      report: (env, outcomes) => this.relay.report(env, outcomes),
    });
    const wake = (env: Parameters<LocalDispatcher['enqueue']>[0]): void => {
      this.dispatcher.enqueue(env);
      this.relay.kick();
    };
    return runQueueOp(this.queue, req, wake, bounce);
  }

  /** The admin console's HTTP API with its metrics and per-minute stats. */
  private async startAdmin(live: LiveFeed): Promise<void> {
    const admin = this.config.admin!;
    const log = this.log.child({ part: 'admin' });
    const metrics = createMetrics({
      bus: this.events,
      scripts: this.options.metricsScripts?.(this.scripts) ?? this.scripts,
      queue: this.queue,
      relay: this.relay.counters,
      local: this.dispatcher.counters,
      openConnections: () => live.connections().length,
    });
    this.options.extraMetrics?.(metrics.registry);
    const stats = new MinuteStats({
      delivered: () => this.relay.counters.delivered + this.dispatcher.counters.delivered,
      queueSize: () => this.queue.size,
    });
    stats.start(this.events);
    this.stopAdmin.push(() => metrics.stop(), () => stats.stop());
    this.adminHttp = new AdminHttp({
      config: this.config,
      admin,
      scripts: this.scripts,
      files: new ScriptFiles(this.scripts.dir),
      queue: this.queue,
      queueOp: (req) => this.queueOp(req),
      bus: this.events,
      live,
      stats,
      metrics: metrics.registry,
      log,
    });
    try {
      this.adminAddress = await this.adminHttp.listen();
    } catch (err) {
      await this.adminHttp.close().catch(() => undefined);
      this.adminHttp = null;
      for (const f of this.stopAdmin.splice(0)) f();
      throw new Error(`admin API on ${admin.listen}:${admin.port}: ${(err as Error).message}`);
    }
    log.info({ address: this.adminAddress.address, port: this.adminAddress.port, tls: !!admin.tls }, 'admin API listening');
  }

  /**
   * Graceful stop: no new connections; idle sessions get 421 now, busy ones when their
   * transaction ends or at the deadline; then local delivery is let finish.
   */
  async stop(deadlineMs = this.config.limits.timeouts.shutdown * 1000): Promise<void> {
    for (const l of this.listeners) l.stopAccepting();
    await this.adminHttp?.close();
    this.adminHttp = null;
    for (const f of this.stopAdmin.splice(0)) f();
    await drainListeners(this.listeners, deadlineMs);
    await this.dispatcher.stop();
    await this.relay.stop();
    this.control?.close();
    this.scripts.stop();
  }

  /** The admin console's live feed (null when the admin API is off). */
  get liveFeed(): LiveFeed | null {
    return this.live;
  }
}
