import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { Config, SenderConfig } from '../../config/schema.js';
import { resolveSecret } from '../../config/load.js';
import type { DnsResolver } from '../../dns/resolver.js';
import type { Batv } from '../../policy/batv.js';
import type { Directory } from '../../policy/directory.js';
import type { Envelope, EnvelopeRecipient } from '../../queue/envelope.js';
import type { QueueIndex } from '../../queue/queue-index.js';
import type { ScriptHost } from '../../script/script-host.js';
import type { RelayoutRun } from '../../script/relayout-hooks.js';
import type { RecipientOutcome } from '../dsn.js';
import { lookupMx, mxTargets } from '../mx.js';
import { shouldGiveUp, type RetrySchedule } from '../retry.js';
import { selects, type SenderRules } from '../sender-rules.js';
import { SmtpClient, SmtpClientError, type ClientOptions, type ClientTimeouts, type Transaction } from '../smtp-client.js';
import { applyResults, type AttemptResult, type RelayCounters } from './outcomes.js';
import { readHeaderSync, type HeaderInfo } from './header-data.js';

export interface RunDeps {
  config: Config;
  index: QueueIndex;
  scripts: ScriptHost;
  dns: DnsResolver;
  batv: Batv | null;
  directory: Directory;
  schedule: RetrySchedule;
  counters: RelayCounters;
  log: Logger;
  /** Builds and queues a DSN (inside the message's lock: its file still exists). */
  report(env: Envelope, outcomes: RecipientOutcome[]): Promise<void>;
  /** The server is stopping: finish the transaction in flight, start no other. */
  stopping(): boolean;
}

interface Item {
  env: Envelope;
  rcpts: EnvelopeRecipient[];
  priority: number;
  /** Bytes of the queue file (R5 Size); the message sent is this less `env.headerOffset`. */
  fileSize: number;
}

/** The run's messages for one destination, taken in order by its connections (an index: a shift would copy). */
interface Pending {
  items: Item[];
  next: number;
}

/** One transaction's worth of a message: all its recipients for this run, or a Max* share. */
interface Unit {
  it: Item;
  rcpts: EnvelopeRecipient[];
  /** Built once: a transaction pipelined ahead is sent again as the same object. */
  tx?: Transaction;
}

/** Units of the same message back into one item per message (settled together). */
function mergeUnits(units: Unit[]): Item[] {
  const out: Item[] = [];
  for (const u of units) {
    const same = out.find((x) => x.env === u.it.env);
    if (same) same.rcpts = [...same.rcpts, ...u.rcpts];
    else out.push({ ...u.it, rcpts: [...u.rcpts] });
  }
  return out;
}

interface Destination {
  label: string;
  targets: { host: string; address: string; port: number; servername?: string }[];
}

/** Longest stretch of CheckFile work (header reads and the Lua call) between two yields. */
const SLICE_MS = 5;
/**
 * Settlements (queue updates: removing a delivered message is two unlinks, each a thread-pool
 * job that can take milliseconds on a busy disk) run while their connection reads the replies
 * to the next transaction's pipelined commands; a connection sends that transaction's data
 * only once its previous settlement is durable, so a crash re-sends at most the transaction
 * each connection has in flight (issue 6, R4). The cap guards the run as a whole.
 */
const SETTLING_MAX = 16;

const p2 = (n: number): string => String(n).padStart(2, '0');

/** R5: local time of queueing as YYYYMMDDHHMMSS. */
export function creationTime(iso: string): string {
  const d = new Date(iso);
  return `${d.getFullYear()}${p2(d.getMonth() + 1)}${p2(d.getDate())}${p2(d.getHours())}${p2(d.getMinutes())}${p2(d.getSeconds())}`;
}

const domainOf = (a: string): string => a.slice(a.lastIndexOf('@') + 1).toLowerCase();

/**
 * One send run of one sender (R2): the due recipients its rules select, a fresh relayout.lua
 * state (Start, CheckFile per message, priorities), then delivery to the smarthost or each
 * domain's MX hosts, with ServerConnected per connection, ReturnCodeHandler on every reply
 * and the Max* limits splitting transactions and connections.
 */
export class SendRun {
  private readonly log: Logger;
  private run!: RelayoutRun;
  private readonly settling = new Set<Promise<void>>();
  private settleError: Error | null = null;

  constructor(
    private readonly sender: SenderConfig,
    private readonly rules: SenderRules,
    private readonly deps: RunDeps,
  ) {
    this.log = deps.log.child({ sender: sender.id });
  }

  private due(): Item[] {
    const now = Date.now();
    const out: Item[] = [];
    for (const env of this.deps.index.list()) {
      if (env.hold) continue;
      const rcpts = env.recipients.filter(
        (r) => r.state === 'pending' && r.route.kind === 'remote' && (r.nextAttempt ?? 0) <= now && selects(this.rules, r.address, env.size),
      );
      if (rcpts.length) out.push({ env, rcpts, priority: 50, fileSize: env.headerOffset + env.size });
    }
    return out;
  }

  async execute(): Promise<void> {
    const due = this.due();
    if (!due.length) return;
    const s = this.sender;
    this.run = this.deps.scripts.relayoutRun(s, {
      useBATV: s.useBATV,
      maxMessagesPerConnection: s.maxMessagesPerConnection,
      maxRecipientsPerConnection: s.maxRecipientsPerConnection,
      maxRecipientsPerMessage: s.maxRecipientsPerMessage,
    }, this.log);
    try {
      this.run.start();
      const items: Item[] = [];
      let slice = performance.now();
      for (const item of due) {
        // Synchronous header reads, in slices of a few milliseconds between which the rest of
        // the server runs (a large queue would otherwise hold the event loop).
        if (performance.now() - slice > SLICE_MS) {
          await new Promise((res) => setImmediate(res));
          slice = performance.now();
        }
        const path = this.deps.index.spool.messagePath(item.env.id);
        let head: HeaderInfo;
        try {
          head = readHeaderSync(path, item.env.headerOffset);
        } catch {
          head = { lines: [], data: {}, size: item.fileSize };
        }
        item.fileSize = head.size;
        const a = this.run.checkFile({
          filename: path,
          size: item.fileSize,
          creationTime: creationTime(item.env.received),
          returnPath: item.env.sender,
          recipients: item.rcpts.map((r) => r.address),
          headerData: head.data,
          headerLines: head.lines,
        });
        if (a.skipSend) {
          this.log.info({ queueId: item.env.id, reason: a.reason }, 'skipped by relayout.lua');
          // R1: a recipient every run keeps skipping is given up at the give-up time.
          if (shouldGiveUp(Date.parse(item.env.received), Date.now(), this.deps.schedule)) {
            const reply = `451 4.4.7 Not sent: skipped by relayout.lua until the give-up time${a.reason ? ` (${a.reason})` : ''}`;
            await this.settle(item, item.rcpts.map((r) => ({ address: r.address, code: 451, enhanced: '4.4.7', reply })), 'relayout.lua');
          }
          continue;
        }
        items.push({ ...item, priority: a.priority });
      }
      // R2: highest priority first, oldest first among equals.
      items.sort((x, y) => y.priority - x.priority || (x.env.received < y.env.received ? -1 : x.env.received > y.env.received ? 1 : 0));
      if (s.mode === 'smarthost') await this.deliver({ label: `${s.host}:${s.port}`, targets: [{ host: s.host!, address: s.host!, port: s.port }] }, items);
      else await this.deliverByMx(items);
    } finally {
      this.run.close();
    }
  }

  private async deliverByMx(items: Item[]): Promise<void> {
    const byDomain = new Map<string, Item[]>();
    for (const it of items) {
      for (const r of it.rcpts) {
        const d = domainOf(r.address);
        const list = byDomain.get(d) ?? [];
        const same = list.find((x) => x.env === it.env);
        if (same) same.rcpts.push(r);
        else list.push({ ...it, rcpts: [r] });
        byDomain.set(d, list);
      }
    }
    await Promise.all(
      [...byDomain].map(async ([domain, list]) => {
        const mx = await lookupMx(this.deps.dns, domain, { localNames: [this.deps.config.hostname] });
        if (mx.kind !== 'route') {
          const code = mx.kind === 'permanent' ? 550 : 451;
          for (const it of list) await this.settle(it, it.rcpts.map((r) => ({ address: r.address, code, enhanced: mx.status, reply: `${code} ${mx.status} ${mx.message}` })), domain);
          return;
        }
        const targets = [...mxTargets(mx)].map((t) => ({ host: t.host, address: t.address, port: this.sender.port, servername: t.host }));
        await this.deliver({ label: domain, targets }, list);
      }),
    );
  }

  private clientOptions(t: Destination['targets'][number]): ClientOptions {
    const s = this.sender;
    return {
      host: t.address,
      port: t.port,
      servername: t.servername ?? (s.mode === 'smarthost' ? s.host : undefined),
      tls: s.tls,
      // Most MX hosts cannot be verified; opportunistic TLS to them is encryption only.
      rejectUnauthorized: s.mode === 'mx' && s.tls === 'opportunistic' ? false : s.verifyCertificate,
      ca: s.ca ? readFileSync(s.ca) : undefined,
      helo: s.helo ?? this.deps.config.hostname,
      auth: s.auth ? { user: s.auth.user, password: resolveSecret(s.auth.password, 'config', `senders[${s.id}].auth.password`), mechanism: s.auth.mechanism } : undefined,
      timeouts: clientTimeouts(s.timeouts),
      onReply: (cmd, full, last) => this.run.returnCode(cmd, full, last),
    };
  }

  /** The first target that answers, in order; null with the last error when none does. */
  private async connect(dest: Destination): Promise<{ client: SmtpClient } | { error: AttemptResult }> {
    let last: AttemptResult = { address: '', code: 451, reply: `451 4.4.1 no usable host for ${dest.label}` };
    for (const t of dest.targets) {
      try {
        const client = await SmtpClient.connect(this.clientOptions(t));
        this.run.serverConnected(client.remote);
        return { client };
      } catch (err) {
        last = errorResult(err, `${t.host}[${t.address}]:${t.port}`);
        this.log.info({ relay: `${t.host}:${t.port}`, err: (err as Error).message }, 'connection failed');
        // A permanent refusal of the greeting or EHLO is the server's answer, not a dead host.
        if (last.code >= 500) break;
      }
    }
    return { error: last };
  }

  /** Up to `connectionsPerDestination` connections work through the run's messages in order. */
  private async deliver(dest: Destination, items: Item[]): Promise<void> {
    const pending: Pending = { items, next: 0 };
    const n = Math.max(1, Math.min(this.sender.connectionsPerDestination, items.length));
    try {
      await Promise.all(Array.from({ length: n }, () => this.connectionWorker(dest, pending)));
    } finally {
      await this.settled();
    }
  }

  /**
   * Records a transaction's results without holding up the connection: the next transaction
   * starts while the queue is updated (waits only when SETTLING_MAX updates are in flight).
   */
  /** Starts recording a transaction's results; `done` resolves (never rejects) once they are durable. */
  private async settleLater(it: Item, results: AttemptResult[], relay: string): Promise<{ done: Promise<void> }> {
    while (this.settling.size >= SETTLING_MAX) await Promise.race(this.settling);
    const p: Promise<void> = this.settle(it, results, relay)
      .catch((err: Error) => {
        this.settleError ??= new Error(`cannot record the results for ${it.env.id}: ${err.message}`, { cause: err });
      })
      .finally(() => this.settling.delete(p));
    this.settling.add(p);
    return { done: p };
  }

  /** Waits for every update in flight; rejects with the first that failed. */
  private async settled(): Promise<void> {
    while (this.settling.size) await Promise.all([...this.settling]);
    const err = this.settleError;
    this.settleError = null;
    if (err) throw err;
  }

  /**
   * One connection's share of the run: messages in order, split into transactions by the Max*
   * limits. With PIPELINING the next transaction goes out behind each one's data, when the
   * same connection is to carry it.
   */
  private async connectionWorker(dest: Destination, pending: Pending): Promise<void> {
    const st = this.run.settings;
    let client: SmtpClient | null = null;
    let messages = 0;
    let recipients = 0;
    let previous: { done: Promise<void> } | null = null;
    // Transactions taken from the run's list and not yet sent (the rest of a split message, and
    // the one pipelined ahead).
    const queue: Unit[] = [];
    const take = (): Unit | null => {
      if (!queue.length) {
        if (pending.next >= pending.items.length) return null;
        const it = pending.items[pending.next++];
        // A transaction never holds more recipients than a connection may carry either.
        const per = Math.min(st.maxRecipientsPerMessage || Infinity, st.maxRecipientsPerConnection || Infinity, it.rcpts.length);
        for (let i = 0; i < it.rcpts.length; i += per) queue.push({ it, rcpts: it.rcpts.slice(i, i + per) });
      }
      return queue.shift() ?? null;
    };
    // R2: the per-connection limits make the sender QUIT and reconnect.
    const full = (u: Unit, extraMessages: number, extraRecipients: number): boolean =>
      (!!st.maxMessagesPerConnection && messages + extraMessages >= st.maxMessagesPerConnection) ||
      (!!st.maxRecipientsPerConnection && recipients + extraRecipients + u.rcpts.length > st.maxRecipientsPerConnection);
    for (let u = this.deps.stopping() ? null : take(); u; u = this.deps.stopping() ? null : take()) {
      if (client && full(u, 0, 0)) {
        await client.quit();
        client = null;
      }
      if (!client || client.closed) {
        const c = await this.connect(dest);
        if ('error' in c) {
          // Nothing more goes to this destination in this run.
          const rest = mergeUnits([u, ...queue.splice(0)]).concat(pending.items.slice(pending.next));
          pending.next = pending.items.length;
          for (const x of rest) await this.settle(x, x.rcpts.map((r) => ({ ...c.error, address: r.address })), dest.label);
          return;
        }
        client = c.client;
        messages = 0;
        recipients = 0;
      }
      let next: Unit | null = null;
      if (client.extensions.has('PIPELINING') && !this.deps.stopping()) {
        next = take();
        if (next) {
          queue.unshift(next);
          if (full(next, 1, u.rcpts.length)) next = null;
        }
      }
      // The previous transaction's results are durable before this one's data goes out.
      if (previous) await previous.done;
      const results = await this.transaction(client, u, next);
      messages++;
      recipients += u.rcpts.length;
      previous = await this.settleLater({ ...u.it, rcpts: u.rcpts }, results, client.label);
    }
    await client?.quit();
    // Stopping with a transaction taken but not sent: it stays queued for the next run.
  }

  private tx(u: Unit): Transaction {
    if (u.tx) return u.tx;
    const env = u.it.env;
    let from = env.sender;
    const batv = this.deps.batv;
    // R6: a return path in a local domain goes out BATV-tagged.
    if (this.run.settings.useBATV && batv && from && this.deps.directory.isLocalDomain(domainOf(from))) from = batv.sign(from);
    u.tx = {
      from,
      recipients: u.rcpts.map((x) => ({ address: x.address, notify: x.dsn?.notify, orcpt: x.dsn?.orcpt })),
      // RFC 1870: the octets sent, our Received line included.
      size: u.it.fileSize - env.headerOffset,
      body: env.body,
      smtputf8: env.smtputf8,
      ret: env.dsn?.ret,
      envid: env.dsn?.envid,
      data: { path: this.deps.index.spool.messagePath(env.id), offset: env.headerOffset },
    };
    return u.tx;
  }

  private async transaction(client: SmtpClient, u: Unit, next: Unit | null): Promise<AttemptResult[]> {
    try {
      const r = await client.send(this.tx(u), next ? this.tx(next) : undefined);
      return r.perRecipient.map((p) => ({ address: p.address, code: p.code, enhanced: p.enhanced, reply: p.reply, remoteMta: client.remote, dsnPassed: r.dsn }));
    } catch (err) {
      const e = errorResult(err, client.label);
      return u.rcpts.map((x) => ({ ...e, address: x.address }));
    }
  }

  private settle(it: Item, results: AttemptResult[], relay: string): Promise<void> {
    return applyResults(this.deps.index, it.env.id, results, this.deps.schedule, this.deps.counters, this.log, relay, (env, o) => this.deps.report(env, o));
  }
}

/** A network error or timeout is temporary (R4); a refusal keeps the server's code. */
function errorResult(err: unknown, where: string): AttemptResult {
  if (err instanceof SmtpClientError && err.reply && (err.kind === 'reply' || err.kind === 'auth')) {
    return { address: '', code: err.reply.code >= 500 ? err.reply.code : 451, enhanced: err.reply.enhanced, reply: err.reply.full, remoteMta: where };
  }
  return { address: '', code: 451, enhanced: '4.4.1', reply: `451 4.4.1 ${where}: ${(err as Error).message}`, remoteMta: where };
}

/** A sender's timeouts (seconds, in the config) as the client's (milliseconds). */
export function clientTimeouts(t: { connect?: number; command?: number }): Partial<ClientTimeouts> {
  const ms = (sec: number): number => Math.round(sec * 1000);
  return {
    ...(t.connect ? { connect: ms(t.connect) } : {}),
    ...(t.command ? { mail: ms(t.command), rcpt: ms(t.command), greeting: ms(t.command), ehlo: ms(t.command), dataInit: ms(t.command) } : {}),
  };
}
