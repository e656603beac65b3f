import { spawn, type ChildProcess } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { TestClient } from './smtp-client.js';
import { treePids } from '../../bench/proctree.js';
export { freePort, prng } from './test-util.js';

/**
 * Pieces of the crash-safety test: the real server as a child process that can be SIGKILLed
 * and restarted on the same port and data folder, a load generator that remembers which
 * messages got their 250, and a census of what the Maildir folders hold.
 */

export const CLI = resolve('dist/cli.js');

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `node dist/cli.js serve --config FILE`, started and killed again and again. */
export class ServerProcess {
  private child: ChildProcess | null = null;
  private exited: Promise<number | null> = Promise.resolve(null);
  /** The last stderr output of every run, for failure messages. */
  private log = '';
  starts = 0;

  constructor(
    readonly configFile: string,
    readonly port: number,
  ) {}

  get stderrTail(): string {
    return this.log.slice(-4000);
  }

  /** The running server's process id, or null while it is down. */
  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  /** Whether the server is running (it may have crashed on its own). */
  get alive(): boolean {
    const c = this.child;
    return !!c && c.exitCode === null && c.signalCode === null;
  }

  /**
   * Spawns the server; with `ready`, resolves once it listens (it has recovered its queue by
   * then). While it was down, the port may briefly have served as some connection's local
   * port: EADDRINUSE at start is waited out.
   */
  async start(ready = true, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const out = this.spawn();
      if (!ready) return;
      const child = this.child!;
      while (!out.text.includes(`listening on 127.0.0.1:${this.port}`)) {
        if (child.exitCode !== null || child.signalCode !== null) break;
        if (Date.now() > deadline) throw new Error(`moonpost did not start within ${timeoutMs} ms:\n${this.stderrTail}`);
        await sleep(10);
      }
      if (child.exitCode === null && child.signalCode === null) return;
      await this.exited;
      this.child = null;
      if (!out.text.includes('EADDRINUSE') || Date.now() > deadline) throw new Error(`moonpost exited at start (${child.exitCode ?? child.signalCode}):\n${this.stderrTail}`);
      await sleep(100);
    }
  }

  private spawn(): { text: string } {
    if (this.child) throw new Error('already running');
    const child = spawn(process.execPath, [CLI, 'serve', '--config', this.configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    this.starts++;
    const out = { text: '' };
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => {
      out.text += d;
      this.log = (this.log + d).slice(-20_000);
    });
    // 'close' (not 'exit'): its stderr has been read to the end by then.
    this.exited = new Promise((res) => child.once('close', (code) => res(code)));
    return out;
  }

  /** SIGKILL: no chance to finish anything. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child) return;
    child.kill('SIGKILL');
    await this.exited;
    this.child = null;
  }

  /**
   * SIGKILL to one of the server's worker processes (`workers: N`), chosen by `pick` from
   * those alive; false when it has none now (all being replaced). The server stays up.
   */
  async killWorker(pick: (n: number) => number): Promise<boolean> {
    const primary = this.pid;
    if (primary === null) return false;
    // The workers are the primary's only descendants.
    const workers = treePids(primary).filter((p) => p !== primary);
    if (!workers.length) return false;
    try {
      process.kill(workers[pick(workers.length)], 'SIGKILL');
      return true;
    } catch {
      return false;
    }
  }

  /** SIGTERM, the graceful stop; returns the exit code. */
  async stop(timeoutMs = 15_000): Promise<number | null> {
    const child = this.child;
    if (!child) return null;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const code = await this.exited;
    clearTimeout(timer);
    this.child = null;
    return code;
  }
}

export interface Sent {
  seq: number;
  /** Mailbox folders (`domain/local-part`) that must each get a copy once acknowledged. */
  mailboxes: string[];
  /** 250: acknowledged; another code: refused; null: the connection ended first. */
  final: number | null;
}

export interface LoadOptions {
  port: number;
  /** Concurrent connections. */
  connections: number;
  /** Stop starting new messages after this many. */
  maxMessages: number;
  /** Run tag in every Message-ID, so no other run's mail is counted. */
  tag: string;
  random: () => number;
  localDomain: string;
  remoteDomain: string;
}

const LINE = 'The quick brown fox jumps over the lazy dog; 0123456789 abcdefghijklmnopqrstuvwxyz.';

/** The id a message carries in its Message-ID and Subject. */
export const messageIdOf = (tag: string, seq: number): string => `<crash-${seq}.${tag}@load.test>`;
export const endLine = (seq: number): string => `END OF MESSAGE ${seq}`;

/**
 * Several SMTP connections sending numbered messages as fast as the server takes them, through
 * kills and restarts: a refused or dropped connection is retried after a few milliseconds.
 * Every message's fate is in `sent`: only a 250 after DATA counts as acknowledged.
 */
export class LoadGenerator {
  readonly sent = new Map<number, Sent>();
  private seq = 0;
  private stopping = false;
  private workers: Promise<void>[] = [];
  connects = 0;
  connectFailures = 0;
  dropped = 0;

  constructor(private readonly o: LoadOptions) {}

  start(): void {
    for (let i = 0; i < this.o.connections; i++) this.workers.push(this.worker());
  }

  /** Lets every connection finish the message in hand, then QUIT. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.workers);
  }

  get acknowledged(): number {
    let n = 0;
    for (const s of this.sent.values()) if (s.final === 250) n++;
    return n;
  }

  private recipients(): string[] {
    const r = this.o.random();
    const pick = (n: number): number => Math.floor(this.o.random() * n);
    const local = (k: number): string => `u${k}@${this.o.localDomain}`;
    const remote = (k: number): string => `r${k}@${this.o.remoteDomain}`;
    if (r < 0.6) return [local(pick(8))];
    if (r < 0.75) {
      const a = pick(8);
      return [local(a), local((a + 1 + pick(7)) % 8)];
    }
    if (r < 0.9) return [remote(pick(4))];
    return [local(pick(8)), remote(pick(4))];
  }

  private body(seq: number, rcpts: string[]): string {
    // Mostly small; now and then 40-200 KB, so that kills also land inside DATA and its writes.
    const lines = this.o.random() < 0.06 ? 500 + Math.floor(this.o.random() * 2000) : 1 + Math.floor(this.o.random() * 20);
    const head = [
      `Message-ID: ${messageIdOf(this.o.tag, seq)}`,
      'From: load@client.test',
      `To: ${rcpts.join(', ')}`,
      `Subject: crash-safety #${seq}`,
      `Date: ${new Date().toUTCString()}`,
      '',
    ];
    const body = Array.from({ length: lines }, (_, i) => `${i} ${LINE}`);
    return [...head, ...body, endLine(seq), ''].join('\r\n');
  }

  private async worker(): Promise<void> {
    while (!this.stopping) {
      let c: TestClient | null = null;
      try {
        c = await TestClient.connect(this.o.port);
        // With nobody listening, a connection from an ephemeral port equal to the server's
        // can meet itself (TCP simultaneous open) and would hold the port: drop it.
        if (c.socket.localPort === this.o.port) throw new Error('connected to itself');
        this.connects++;
        const greeting = await c.read(10_000);
        if (greeting.code !== 220) throw new Error(greeting.raw);
        if ((await c.cmd('EHLO load.test')).code !== 250) throw new Error('EHLO');
      } catch {
        c?.close();
        this.connectFailures++;
        // The server is down or starting: retry soon, without stealing its CPU.
        await sleep(20 + Math.floor(this.o.random() * 30));
        continue;
      }
      // A few messages per connection, then QUIT (or, sometimes, just hang up).
      const perConnection = 1 + Math.floor(this.o.random() * 8);
      try {
        for (let i = 0; i < perConnection && !this.stopping && this.seq < this.o.maxMessages; i++) await this.one(c);
        if (this.o.random() < 0.8) await c.cmd('QUIT');
      } catch {
        this.dropped++;
      } finally {
        c.close();
      }
      if (this.seq >= this.o.maxMessages) break;
    }
  }

  /**
   * One transaction: MAIL, RCPT, then DATA or (a fifth of the time) BDAT in one or two chunks;
   * the envelope commands pipelined a third of the time.
   */
  private async one(c: TestClient): Promise<void> {
    const seq = ++this.seq;
    const rcpts = this.recipients();
    const entry: Sent = { seq, mailboxes: rcpts.map((a) => `${a.split('@')[1]}/${a.split('@')[0]}`), final: null };
    this.sent.set(seq, entry);
    const bdat = this.o.random() < 0.2;
    const pipelined = this.o.random() < 0.33;
    const expect = (r: { code: number; raw: string }, code: number, what: string): void => {
      if (r.code !== code) throw new Error(`${what}: ${r.raw}`);
    };
    const commands = [`MAIL FROM:<load@client.test>`, ...rcpts.map((r) => `RCPT TO:<${r}>`), ...(bdat ? [] : ['DATA'])];
    if (pipelined) {
      c.write(commands.map((l) => `${l}\r\n`).join(''));
      for (const l of commands) expect(await c.read(), l === 'DATA' ? 354 : 250, l);
    } else for (const l of commands) expect(await c.cmd(l), l === 'DATA' ? 354 : 250, l);
    const message = this.body(seq, rcpts);
    if (!bdat) {
      c.write(`${message.replace(/^\./gm, '..')}.\r\n`);
    } else {
      const cut = this.o.random() < 0.5 ? Math.floor(message.length / 2) : 0;
      if (cut) {
        c.write(`BDAT ${cut}\r\n${message.slice(0, cut)}`);
        expect(await c.read(15_000), 250, 'BDAT');
      }
      c.write(`BDAT ${message.length - cut} LAST\r\n${message.slice(cut)}`);
    }
    const final = await c.read(15_000);
    entry.final = final.code;
  }
}

export interface Census {
  /** `seq` → mailbox → copies. */
  copies: Map<number, Map<string, number>>;
  /** Delivered files that do not end with the message's last line (truncated, damaged). */
  damaged: string[];
  /** Delivered files without one of our Message-IDs (bounces, strangers). */
  foreign: string[];
  files: number;
}

/**
 * Reads every Maildir file under `<mailRoot>/<domain>/<user>/{new,cur}` for the given domains;
 * a copy of ours without `header` (when given) counts as damaged.
 */
export async function census(tag: string, roots: { mailRoot: string; domain: string }[], header?: RegExp): Promise<Census> {
  const out: Census = { copies: new Map(), damaged: [], foreign: [], files: 0 };
  const idRe = new RegExp(`^Message-ID: <crash-(\\d+)\\.${tag}@load\\.test>\\r$`, 'm');
  for (const { mailRoot, domain } of roots) {
    const domainDir = join(mailRoot, domain);
    const users = await readdir(domainDir).catch(() => [] as string[]);
    for (const user of users) {
      for (const sub of ['new', 'cur']) {
        const dir = join(domainDir, user, sub);
        for (const name of await readdir(dir).catch(() => [] as string[])) {
          const path = join(dir, name);
          const text = await readFile(path, 'latin1');
          out.files++;
          const m = idRe.exec(text);
          if (!m) {
            out.foreign.push(path);
            continue;
          }
          const seq = Number(m[1]);
          if (!text.endsWith(`\r\n${endLine(seq)}\r\n`) || (header && !header.test(text))) out.damaged.push(path);
          const mailbox = `${domain}/${user}`;
          const per = out.copies.get(seq) ?? new Map<string, number>();
          per.set(mailbox, (per.get(mailbox) ?? 0) + 1);
          out.copies.set(seq, per);
        }
      }
    }
  }
  return out;
}

export interface Counts {
  attempted: number;
  acknowledged: number;
  refused: number;
  unacknowledged: number;
  /** Acknowledged messages with a copy in every recipient's mailbox. */
  delivered: number;
  /** Acknowledged messages with more than one copy in some mailbox. */
  duplicated: number;
  /** Of those, messages doubled in a mailbox of the server under test (not through the relay). */
  duplicatedLocal: number;
  /** Acknowledged messages missing from some recipient's mailbox. */
  lost: number;
  /** Acknowledged messages that went (also) through the relay to the sink. */
  relayed: number;
  /** Unacknowledged messages delivered anyway (allowed). */
  unacknowledgedDelivered: number;
  /** Copies in a mailbox the message was not addressed to. */
  misdelivered: number;
  damaged: number;
  foreign: number;
  lostExamples: string[];
}

export function tally(sent: Map<number, Sent>, c: Census, remoteDomain: string): Counts {
  const n: Counts = {
    attempted: sent.size,
    acknowledged: 0,
    refused: 0,
    unacknowledged: 0,
    delivered: 0,
    duplicated: 0,
    duplicatedLocal: 0,
    lost: 0,
    relayed: 0,
    unacknowledgedDelivered: 0,
    misdelivered: 0,
    damaged: c.damaged.length,
    foreign: c.foreign.length,
    lostExamples: [],
  };
  for (const s of sent.values()) {
    const got = c.copies.get(s.seq) ?? new Map<string, number>();
    for (const mb of got.keys()) if (!s.mailboxes.includes(mb)) n.misdelivered++;
    if (s.final !== 250) {
      if (s.final === null) n.unacknowledged++;
      else n.refused++;
      if (got.size) n.unacknowledgedDelivered++;
      continue;
    }
    n.acknowledged++;
    const missing = s.mailboxes.filter((mb) => !got.get(mb));
    if (missing.length) {
      n.lost++;
      if (n.lostExamples.length < 10) n.lostExamples.push(`#${s.seq} missing in ${missing.join(', ')}`);
    } else n.delivered++;
    if ([...got.values()].some((k) => k > 1)) n.duplicated++;
    if ([...got].some(([mb, k]) => k > 1 && !mb.startsWith(`${remoteDomain}/`))) n.duplicatedLocal++;
    if (!missing.length && s.mailboxes.some((mb) => mb.startsWith(`${remoteDomain}/`))) n.relayed++;
  }
  for (const seq of c.copies.keys()) if (!sent.has(seq)) n.misdelivered++;
  return n;
}
