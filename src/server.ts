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
import { runQueueOp } from './admin/queue-ops.js';
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
    for (const env of envelopes) this.queue.add({ ...env, nextAttempt: 0 });
    this.relay.start();
    this.control = await listenControl(join(this.config.dataDir, 'control.sock'), (req) =>
      runQueueOp(this.queue, req, (env) => {
        this.dispatcher.enqueue(env);
        this.relay.kick();
      }),
    );

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
          hooksFor: (policy, facts, log) => this.scripts.sessionHooks(policy, facts, log),
        },
        limiter,
      );
      const addr = await listener.listen();
      this.listeners.push(listener);
      this.bound.push({ id: service.id, name: service.name, ...addr });
    }
    return this.bound;
  }

  /**
   * Graceful stop: no new connections; idle sessions get 421 now, busy ones when their
   * transaction ends or at the deadline; then local delivery is let finish.
   */
  async stop(deadlineMs = this.config.limits.timeouts.shutdown * 1000): Promise<void> {
    for (const l of this.listeners) l.stopAccepting();
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
