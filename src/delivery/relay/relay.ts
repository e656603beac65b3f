import type { Logger } from 'pino';
import type { Config } from '../../config/schema.js';
import type { DnsResolver } from '../../dns/resolver.js';
import type { Batv } from '../../policy/batv.js';
import type { Directory } from '../../policy/directory.js';
import type { Envelope } from '../../queue/envelope.js';
import type { QueueIndex } from '../../queue/queue-index.js';
import { injectMessage } from '../../queue/inject.js';
import type { ScriptHost } from '../../script/script-host.js';
import { prepareDsn, type RecipientOutcome } from '../dsn.js';
import { parseSenderRules, selects, type SenderRules } from '../sender-rules.js';
import { applyResults, type RelayCounters } from './outcomes.js';
import { SendRun, type RunDeps } from './send-run.js';

/**
 * The outbound side: a send run per sender (R1, R2) soon after mail for remote recipients is
 * queued and on a timer, one run per sender at a time; DSNs for what fails (R4); and an
 * immediate bounce for recipients no sender's rules select.
 */
export class Relay {
  readonly counters: RelayCounters = { delivered: 0, deferred: 0, bounced: 0 };
  private readonly senders: { config: Config['senders'][number]; rules: SenderRules }[];
  private readonly running = new Map<number, Promise<void>>();
  private readonly again = new Set<number>();
  private timer: NodeJS.Timeout | null = null;
  private kickTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly deps: RunDeps;

  constructor(
    private readonly config: Config,
    private readonly index: QueueIndex,
    scripts: ScriptHost,
    dns: DnsResolver,
    batv: Batv | null,
    private readonly directory: Directory,
    private readonly log: Logger,
  ) {
    this.senders = config.senders.map((s) => ({ config: s, rules: parseSenderRules(s.rules) }));
    this.deps = {
      config,
      index,
      scripts,
      dns,
      batv,
      directory,
      schedule: config.delivery.retry,
      counters: this.counters,
      log,
      report: (env, outcomes) => this.report(env, outcomes),
      stopping: () => this.stopped,
    };
  }

  start(): void {
    if (!this.senders.length) {
      if (this.index.list().some(hasRemote)) this.log.warn('no senders configured: mail for remote recipients waits in the queue');
      return;
    }
    this.index.onAdded((env) => {
      if (!hasRemote(env)) return;
      void this.bounceUnselected(env);
      this.kick();
    });
    this.timer = setInterval(() => this.kick(), this.config.delivery.runIntervalSeconds * 1000);
    this.timer.unref();
    for (const env of this.index.list()) if (hasRemote(env)) void this.bounceUnselected(env);
    this.kick();
  }

  /** Starts a run of every sender soon (coalescing bursts of queued mail). */
  kick(): void {
    if (this.stopped || this.kickTimer) return;
    this.kickTimer = setTimeout(() => {
      this.kickTimer = null;
      for (const s of this.senders) this.runSender(s);
    }, 20);
  }

  private runSender(s: { config: Config['senders'][number]; rules: SenderRules }): void {
    if (this.stopped) return;
    if (this.running.has(s.config.id)) {
      this.again.add(s.config.id);
      return;
    }
    const p = new SendRun(s.config, s.rules, this.deps)
      .execute()
      .catch((err: Error) => this.log.error({ sender: s.config.id, err: err.message, stack: err.stack }, 'send run failed'))
      .finally(() => {
        this.running.delete(s.config.id);
        if (this.again.delete(s.config.id)) this.runSender(s);
      });
    this.running.set(s.config.id, p);
  }

  /** R1: a recipient that no sender's rules select is bounced at once. */
  private async bounceUnselected(env: Envelope): Promise<void> {
    const orphans = env.recipients.filter(
      (r) => r.state === 'pending' && r.route.kind === 'remote' && !this.senders.some((s) => selects(s.rules, r.address, env.size)),
    );
    if (!orphans.length) return;
    const results = orphans.map((r) => ({
      address: r.address,
      code: 550,
      enhanced: '5.4.4',
      reply: `550 5.4.4 No message sender is configured for ${r.address.slice(r.address.lastIndexOf('@') + 1)}`,
    }));
    await applyResults(this.index, env.id, results, this.config.delivery.retry, this.counters, this.log, 'none', (e, o) => this.report(e, o));
  }

  /** R4: an RFC 3464 report to the return path (none for <>), queued like any message (also the admin's bounce). */
  async report(env: Envelope, outcomes: RecipientOutcome[]): Promise<void> {
    try {
      const dsn = await prepareDsn({ envelope: env, messagePath: this.index.spool.messagePath(env.id), reportingMta: this.config.hostname, outcomes });
      if (!dsn) return;
      const queued = await injectMessage(
        this.index,
        this.directory,
        { sender: '', recipient: dsn.recipient, chunks: dsn.chunks(), body: dsn.body, smtputf8: dsn.smtputf8 },
        this.config.hostname,
      );
      this.log.info({ queueId: env.id, dsn: queued.id, to: dsn.recipient, reported: outcomes.map((o) => `${o.address} ${o.action}`) }, 'delivery status notification queued');
    } catch (err) {
      this.log.error({ queueId: env.id, err: (err as Error).message }, 'cannot queue a delivery status notification');
    }
  }

  /** Resolves when no run is in progress (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.running.size || this.kickTimer) {
      await Promise.all([...this.running.values()]);
      if (this.kickTimer) await new Promise((r) => setTimeout(r, 25));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.kickTimer) clearTimeout(this.kickTimer);
    this.kickTimer = null;
    await Promise.all([...this.running.values()]);
  }
}

function hasRemote(env: Envelope): boolean {
  return !env.hold && env.recipients.some((r) => r.state === 'pending' && r.route.kind === 'remote');
}
