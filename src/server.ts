import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Config } from './config/schema.js';
import { Directory } from './policy/directory.js';
import { NetworkList } from './policy/cidr.js';
import { Spool } from './queue/spool.js';
import { MaildirDelivery } from './delivery/maildir.js';
import { LocalDispatcher } from './delivery/local-dispatcher.js';
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
import { ConnectionLimiter, Listener } from './smtp/listener.js';
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

/** The whole MTA: listeners, queue, local delivery. `start` recovers the queue first. */
export class MoonpostServer {
  readonly log: Logger;
  readonly spool: Spool;
  readonly directory: Directory;
  readonly dispatcher: LocalDispatcher;
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
  ) {
    this.log = log ?? createLogger(config.log.level);
    this.spool = new Spool(config.dataDir, config.queue.fsync);
    this.directory = new Directory(config);
    this.mailRoot = join(config.dataDir, 'mail');
    const maildir = new MaildirDelivery(this.mailRoot, new DirSyncers(config.queue.fsync), config.queue.fsync);
    this.scripts = new ScriptHost(config, this.log);
    this.queue = new QueueIndex(this.spool);
    this.shared = policyServices(config);
    this.relay = new Relay(config, this.queue, this.scripts, this.shared.dns, this.shared.batv, this.directory, this.log.child({ part: 'relay' }));
    this.dispatcher = new LocalDispatcher(this.queue, maildir, this.log.child({ part: 'delivery' }));
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

    const limits = this.config.limits;
    const limiter = new ConnectionLimiter(limits.connections, limits.connectionsPerIp);
    const relayNetworks = new NetworkList(this.config.relay.networks);
    const shared = this.shared;
    for (const service of this.config.services) {
      const listener = new Listener(
        {
          config: this.config,
          service,
          directory: this.directory,
          relayNetworks,
          proxyTrusted: new NetworkList(service.proxyTrusted),
          ...shared,
          spool: this.spool,
          log: this.log,
          onQueued: (env) => this.queue.add(env),
          hooksFor: (policy, facts, log) => {
            const hooks = this.scripts.sessionHooks(policy, facts, log);
            if (hooks && this.live) this.live.traceHooks(hooks, facts().sessionId);
            return hooks;
          },
          observer: this.live ?? undefined,
        },
        limiter,
      );
      const addr = await listener.listen();
      this.listeners.push(listener);
      this.bound.push({ id: service.id, name: service.name, ...addr });
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
      scripts: this.scripts,
      queue: this.queue,
      relay: this.relay.counters,
      local: this.dispatcher.counters,
      openConnections: () => live.connections().length,
    });
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
    const conns = this.listeners.flatMap((l) => [...l.connections]);
    for (const c of conns) c.session.drain();
    const all = Promise.all(conns.map((c) => c.done));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      all.then(() => false),
      new Promise<boolean>((res) => (timer = setTimeout(() => res(true), deadlineMs))),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      for (const c of this.listeners.flatMap((l) => [...l.connections])) c.forceClose();
      await all;
    }
    await this.dispatcher.stop();
    await this.relay.stop();
    this.control?.close();
    this.scripts.stop();
  }
}
