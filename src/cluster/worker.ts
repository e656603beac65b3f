import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { createLogger } from '../log.js';
import { Directory } from '../policy/directory.js';
import { policyServices } from '../policy/services.js';
import { newQueueId, Spool } from '../queue/spool.js';
import { ScriptHost } from '../script/script-host.js';
import type { Listener } from '../smtp/listener.js';
import { drainListeners, startListeners, type BoundService } from '../server.js';
import { EventForwarder, scriptSnapshot } from './forward.js';
import { WorkerDelivery } from './worker-delivery.js';
import { MaildirDelivery } from '../delivery/maildir.js';
import { DeliverNow } from '../delivery/deliver-now.js';
import { DirSyncers } from '../util/fsync.js';
import { join } from 'node:path';
import { queueIdTag, type PrimaryMessage, type WorkerMessage } from './protocol.js';

const STATS_MS = 2000;

function send(m: WorkerMessage, done?: () => void): void {
  if (!process.connected) {
    done?.();
    return;
  }
  process.send!(m, undefined, {}, () => done?.());
}

/**
 * One SMTP worker: the listeners (sharing the primary's sockets), its own script states, policy
 * services and connection limits, writing accepted mail to the shared spool. It keeps no queue:
 * its sessions write local mailboxes before their 250 (DeliverNow), it makes the first attempt
 * at what it queued with local work left (WorkerDelivery), and hands every message not settled
 * so to the primary, which alone retries and relays.
 */
export class SmtpWorker {
  private listeners: Listener[] = [];
  readonly scripts: ScriptHost;
  private readonly forwarder: EventForwarder | null;
  private statsTimer: NodeJS.Timeout | null = null;
  private delivery: WorkerDelivery | null = null;
  /** The local delivery counts already reported to the primary. */
  private reported = { delivered: 0, deferred: 0 };
  private stopping: Promise<void> | null = null;

  constructor(
    readonly config: Config,
    readonly log: Logger,
    forward: boolean,
  ) {
    this.scripts = new ScriptHost(config, log);
    this.forwarder = forward ? new EventForwarder((m) => send(m)) : null;
  }

  async start(): Promise<BoundService[]> {
    const spool = new Spool(this.config.dataDir, this.config.queue.fsync);
    await spool.init();
    const fsync = this.config.queue.fsync;
    const maildir = new MaildirDelivery(join(this.config.dataDir, 'mail'), new DirSyncers(fsync), fsync);
    const deliverNow = new DeliverNow(maildir);
    const delivery = new WorkerDelivery(spool, deliverNow, this.log.child({ part: 'delivery' }), (env) => send({ t: 'queued', env }));
    this.delivery = delivery;
    await this.scripts.start();
    const fwd = this.forwarder;
    if (fwd) {
      this.scripts.metrics.onFailure((f) => fwd.scriptFailure(f));
      this.statsTimer = setInterval(() => this.sendStats(), STATS_MS);
      this.statsTimer.unref();
    }
    const { listeners, bound } = await startListeners({
      config: this.config,
      log: this.log,
      spool,
      directory: new Directory(this.config),
      scripts: this.scripts,
      shared: policyServices(this.config),
      // The envelope is on disk: should this process die now, the primary finds it in the spool.
      onQueued: (env) => delivery.take(env),
      deliverNow,
      observer: fwd ?? undefined,
      traceHooks: fwd ? (hooks, session) => fwd.traceHooks(hooks, session) : undefined,
    });
    this.listeners = listeners;
    return bound;
  }

  private sendStats(): void {
    const now = { ...(this.delivery?.counters ?? this.reported) };
    const local = { delivered: now.delivered - this.reported.delivered, deferred: now.deferred - this.reported.deferred };
    this.reported = now;
    send({ t: 'stats', ...scriptSnapshot(this.scripts.metrics), local });
  }

  reload(): Promise<void> {
    this.log.info('SIGHUP: reloading scripts');
    return this.scripts.reload();
  }

  /** Graceful stop: sessions drain (421 to idle ones), the last events and counters go out. */
  stop(deadlineMs: number): Promise<void> {
    this.stopping ??= (async () => {
      await drainListeners(this.listeners, deadlineMs);
      await this.delivery?.idle();
      this.scripts.stop();
      if (this.statsTimer) clearInterval(this.statsTimer);
      if (this.forwarder) {
        this.forwarder.flush();
        this.sendStats();
      }
    })();
    return this.stopping;
  }
}

function nextStart(): Promise<Extract<PrimaryMessage, { t: 'start' }>> {
  return new Promise((resolve) => {
    const on = (m: PrimaryMessage): void => {
      // Stopped before it was given anything to do.
      if (m?.t === 'stop') process.exit(0);
      if (m?.t !== 'start') return;
      process.off('message', on);
      resolve(m);
    };
    process.on('message', on);
  });
}

/** The body of a worker process (`moonpost serve` forked by the primary). */
export async function runWorker(): Promise<void> {
  // The tag goes first, before anything is accepted, so the primary can tell this worker's
  // spool files from everyone else's should the worker die.
  const started = nextStart();
  send({ t: 'hello', tag: queueIdTag(newQueueId()) });
  const { worker: id, config, forward } = await started;
  const log = createLogger(config.log.level).child({ worker: id, pid: process.pid });
  const worker = new SmtpWorker(config, log, forward);
  let bound: BoundService[];
  try {
    bound = await worker.start();
  } catch (err) {
    const error = (err as Error).message;
    log.error({ err: error }, 'worker cannot start');
    send({ t: 'failed', error }, () => process.exit(1));
    return;
  }
  log.info({ services: bound.map((b) => `${b.address}:${b.port}`) }, 'worker listening');

  const stop = (deadlineMs: number, why: string): void => {
    log.info({ why }, 'worker stopping');
    void worker.stop(deadlineMs).then(
      () => send({ t: 'bye' }, () => process.exit(0)),
      (err: unknown) => {
        log.error({ err: (err as Error).message }, 'worker stop failed');
        process.exit(1);
      },
    );
  };
  const shutdownMs = config.limits.timeouts.shutdown * 1000;
  process.on('message', (m: PrimaryMessage) => {
    if (m?.t === 'reload') void worker.reload();
    else if (m?.t === 'stop') stop(m.deadlineMs, 'primary');
  });
  // Signals sent to the worker itself (a whole process group, or an administrator's kill).
  process.on('SIGHUP', () => void worker.reload());
  process.on('SIGTERM', () => stop(shutdownMs, 'SIGTERM'));
  process.on('SIGINT', () => stop(shutdownMs, 'SIGINT'));
  send({ t: 'ready', bound });
}
