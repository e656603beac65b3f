/**
 * Hostile clients against a real moonpost (dist/cli.js as a child process), measured: while an
 * attack runs, well-behaved clients keep sending mail and their success rate and end-of-DATA
 * latency are recorded, and the server's RSS is sampled from /proc. Used by tools/attack.ts
 * (`npm run attack`, full size) and by test/e2e/attack-*.test.ts (CI size).
 *
 * Every attack is bounded in time (its deadline) and in connections; every address is on
 * loopback. Attackers connect from 127.77.0.2 and up, so per-address limits meet them and not
 * the well-behaved clients on 127.0.0.1.
 */
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ServerProcess, freePort } from '../test/helpers/crash-load.js';
import { TestClient } from '../test/helpers/smtp-client.js';
import { makeCert } from '../test/helpers/tls-cert.js';
import { hashPassword } from '../src/policy/password.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
export const AUTH_USER = 'alice';
export const AUTH_PASSWORD = 's3cret-attack';

// ---- the server ------------------------------------------------------------------------------

/**
 * The script every attack server runs: cheap defaults for everyone, and for clients that say
 * EHLO loop.evil / hog.evil / error.evil an endless loop, a memory hog or a runtime error in
 * DoMAILFROM (the budgets must stop the first two; the third is logged and the default applies).
 */
export const ATTACK_SCRIPT = `
local seen = 0
function DoMAILFROM(data, from, params, spf, auth)
  seen = seen + 1
  if HeloName == "loop.evil" then while true do end end
  if HeloName == "hog.evil" then
    local t = {} local i = 0
    while true do i = i + 1 t[i] = string.rep("x", 4096) .. i end
  end
  if HeloName == "error.evil" then error("hook failure under load") end
  return params, ""
end
function DoRCPTTO(data, rcpt, params, list)
  if string.find(rcpt, "scriptblocked@", 1, true) then return params, "550 5.7.1 refused by the script" end
  return params, ""
end
`;

export interface AttackServerOptions {
  limits?: Record<string, unknown>;
  scripts?: Record<string, unknown>;
  script?: string;
}

/** A real moonpost in its own process: an MX service with STARTTLS, and a submission service for the AUTH attacks. */
export class AttackServer {
  private sampler: NodeJS.Timeout | null = null;
  /** Highest RSS seen since the last resetPeak(), MB. */
  peakRssMB = 0;

  private constructor(
    readonly proc: ServerProcess,
    readonly port: number,
    /** A submission service: AUTH offered without TLS, for the AUTH attacks. */
    readonly authPort: number,
    readonly dir: string,
    readonly dataDir: string,
  ) {}

  static async start(o: AttackServerOptions = {}): Promise<AttackServer> {
    const dir = await mkdtemp(join(tmpdir(), 'moonpost-attack-'));
    const cert = makeCert();
    const dataDir = join(dir, 'data');
    await mkdir(join(dataDir, 'scripts'), { recursive: true });
    await writeFile(join(dataDir, 'scripts', 'SMTPSVR.LUA'), o.script ?? ATTACK_SCRIPT);
    const port = await freePort();
    const authPort = await freePort();
    const config = {
      hostname: 'attack.test',
      dataDir,
      services: [
        { id: 0, name: 'mx', listen: '127.0.0.1', port, tls: 'starttls', cert: cert.cert, key: cert.key },
        { id: 1, name: 'submission', listen: '127.0.0.1', port: authPort, tls: 'starttls', cert: cert.cert, key: cert.key, auth: true, authWithoutTls: true },
      ],
      domains: [{ name: 'localhost', catchAll: true }],
      users: [{ name: AUTH_USER, password: await hashPassword(AUTH_PASSWORD), cramSecret: AUTH_PASSWORD, addresses: [`${AUTH_USER}@localhost`] }],
      relay: { networks: ['127.0.0.1/32'], mode: 'ip' },
      limits: {
        connections: 400,
        connectionsPerIp: 100,
        // Failed AUTH from one address: every failure waits 2 s (the huge-lines attack needs the wait), none blocks.
        authFailures: { free: 0, delayMs: 2000, maxDelayMs: 2000, block: 100_000 },
        timeouts: { shutdown: 5 },
        ...o.limits,
      },
      scripts: { timeMs: 200, memoryMB: 16, ...o.scripts },
      log: { level: 'error' },
    };
    const configFile = join(dir, 'moonpost.yaml');
    await writeFile(configFile, JSON.stringify(config, null, 2));
    const proc = new ServerProcess(configFile, port);
    await proc.start();
    await rm(cert.dir, { recursive: true, force: true });
    const s = new AttackServer(proc, port, authPort, dir, dataDir);
    s.sampler = setInterval(() => s.sample(), 50);
    s.sampler.unref();
    return s;
  }

  get alive(): boolean {
    return this.proc.alive;
  }

  /** Resident memory now, MB (0 when the process is gone). */
  rssMB(): number {
    const pid = this.proc.pid;
    if (!pid) return 0;
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      return m ? Number(m[1]) / 1024 : 0;
    } catch {
      return 0;
    }
  }

  private sample(): void {
    this.peakRssMB = Math.max(this.peakRssMB, this.rssMB());
  }

  resetPeak(): void {
    this.peakRssMB = this.rssMB();
  }

  /** Files delivered to localhost/<user>. */
  async mailboxCount(user: string): Promise<number> {
    return (await readdir(join(this.dataDir, 'mail', 'localhost', user, 'new')).catch(() => [])).length;
  }

  get stderrTail(): string {
    return this.proc.stderrTail;
  }

  /** Graceful stop; the exit code (null if it had already died). */
  async stop(): Promise<number | null> {
    if (this.sampler) clearInterval(this.sampler);
    const code = this.alive ? await this.proc.stop() : null;
    await this.proc.kill();
    await rm(this.dir, { recursive: true, force: true });
    return code;
  }
}

// ---- well-behaved clients --------------------------------------------------------------------

export interface Stats {
  attempted: number;
  ok: number;
  /** ok / attempted, 0..1 (1 when nothing was attempted). */
  successRate: number;
  /** End-of-DATA reply latency of the successful messages, ms. */
  p50: number;
  p99: number;
  max: number;
  /** The first few failures, with the reply or error that ended them. */
  errors: string[];
  /** Failures by the first three characters of their reason (a reply code, or "err"). */
  failureKinds: Record<string, number>;
}

const percentile = (sorted: number[], p: number): number => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN);

/**
 * A few ordinary MTAs on 127.0.0.1: each connects, sends one 2 KB message (EHLO, MAIL, RCPT,
 * DATA) and QUITs, in a loop with a short pause. A message counts as a success only with a
 * 250 at the end of DATA; the latency is from the final "." to that reply.
 */
export class Bystanders {
  private stopping = false;
  private loops: Promise<void>[] = [];
  private latencies: number[] = [];
  private attempted = 0;
  private failures: string[] = [];
  private seq = 0;

  constructor(
    private readonly port: number,
    private readonly o: { concurrency?: number; pauseMs?: number; timeoutMs?: number } = {},
  ) {}

  start(): void {
    for (let i = 0; i < (this.o.concurrency ?? 4); i++) this.loops.push(this.loop(i));
  }

  async stop(): Promise<Stats> {
    this.stopping = true;
    await Promise.all(this.loops);
    return this.take();
  }

  /** The stats since the last take, and a fresh start. */
  take(): Stats {
    const lat = this.latencies.sort((a, b) => a - b);
    const failureKinds: Record<string, number> = {};
    for (const f of this.failures) failureKinds[f.slice(0, 3)] = (failureKinds[f.slice(0, 3)] ?? 0) + 1;
    const s: Stats = {
      attempted: this.attempted,
      ok: lat.length,
      successRate: this.attempted ? lat.length / this.attempted : 1,
      p50: percentile(lat, 50),
      p99: percentile(lat, 99),
      max: lat.length ? lat[lat.length - 1] : NaN,
      errors: this.failures.slice(0, 5),
      failureKinds,
    };
    this.latencies = [];
    this.attempted = 0;
    this.failures = [];
    return s;
  }

  private async loop(i: number): Promise<void> {
    const timeout = this.o.timeoutMs ?? 15_000;
    while (!this.stopping) {
      const seq = ++this.seq;
      let c: TestClient | null = null;
      try {
        c = await TestClient.connect(this.port, { localAddress: '127.0.0.1' });
        const expect = async (line: string | null, code: number): Promise<void> => {
          if (line !== null) c!.write(`${line}\r\n`);
          const r = await c!.read(timeout);
          if (r.code !== code) throw new Error(`${r.raw.trim()} (after ${line ?? 'connect'})`);
        };
        await expect(null, 220);
        await expect('EHLO bystander.test', 250);
        await expect('MAIL FROM:<bystander@example.com>', 250);
        await expect(`RCPT TO:<bystander${i}@localhost>`, 250);
        await expect('DATA', 354);
        const body = `Subject: bystander ${seq}\r\nFrom: bystander@example.com\r\n\r\n${'An ordinary message line of ordinary text.\r\n'.repeat(48)}`;
        const t0 = performance.now();
        await expect(`${body}.`, 250);
        this.latencies.push(performance.now() - t0);
        c.write('QUIT\r\n');
      } catch (err) {
        this.failures.push((err as Error).message.replace(/; unread.*/s, ''));
      } finally {
        // Counted when it ends, so a message belongs to the window it finished in.
        this.attempted++;
        c?.close();
      }
      if (this.o.pauseMs ?? 20) await sleep(this.o.pauseMs ?? 20);
    }
  }
}

// ---- raw hostile connections -----------------------------------------------------------------

/** A raw socket that collects what the server says, for clients that break the rules. */
export class Raw {
  text = '';
  closed = false;
  private waiters: (() => void)[] = [];

  private constructor(readonly socket: Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.text += d;
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  static async open(port: number, localAddress: string, timeoutMs = 5000): Promise<Raw> {
    const socket = connect({ host: '127.0.0.1', port, localAddress });
    await new Promise<void>((res, rej) => {
      const t = setTimeout(() => rej(new Error('connect timed out')), timeoutMs);
      socket.once('connect', () => (clearTimeout(t), res()));
      socket.once('error', (e) => (clearTimeout(t), rej(e)));
    });
    return new Raw(socket);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Complete reply lines received so far (continuations included). */
  get lines(): string[] {
    const end = this.text.lastIndexOf('\r\n');
    return end < 0 ? [] : this.text.slice(0, end).split('\r\n');
  }

  /** Final reply lines ("250 ..." not "250-..."): one per reply. */
  get replies(): string[] {
    return this.lines.filter((l) => l[3] !== '-');
  }

  /** Waits until `pred` holds or the connection closes or the time is up; returns pred's last value. */
  async until(pred: () => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      if (this.closed || Date.now() > deadline) return pred();
      await new Promise<void>((res) => {
        const t = setTimeout(res, Math.min(200, Math.max(1, deadline - Date.now())));
        this.waiters.push(() => (clearTimeout(t), res()));
      });
    }
    return true;
  }

  /** Writes, honouring backpressure; false when the socket is gone. */
  async write(data: string | Buffer): Promise<boolean> {
    if (this.closed || this.socket.destroyed) return false;
    if (!this.socket.write(data)) {
      await new Promise<void>((res) => {
        const done = (): void => {
          this.socket.off('drain', done);
          this.socket.off('close', done);
          res();
        };
        this.socket.on('drain', done);
        this.socket.on('close', done);
      });
    }
    return !this.closed;
  }

  close(): void {
    this.socket.destroy();
  }
}

/**
 * Attackers' addresses, in 127.77/16: away from 127.0.0.1 (the well-behaved clients, inside
 * relay.networks) and from the 127.0.0.x peers other tests listen on.
 */
export const attackerIp = (n: number): string => `127.77.${Math.floor(n / 250)}.${2 + (n % 250)}`;

/** Checks that every reply line is "ddd text" or "ddd-text"; returns the first bad line. */
export function badReplyLine(lines: string[]): string | null {
  for (const l of lines) if (!/^\d\d\d([ -]|$)/.test(l) || /[\r\n\0]/.test(l)) return l;
  return null;
}

// ---- attacks ----------------------------------------------------------------------------------

export interface AttackContext {
  server: AttackServer;
  /** Attack until this time (Date.now()), then clean up. */
  until: number;
  /** 1 for CI size, more for the full-size harness. */
  scale: number;
}

export interface AttackOutcome {
  /** What the attack did and saw, for the table. */
  notes: string;
  /** Rule breaks the attacker itself observed (wrong or missing replies, smuggled mail...); empty is good. */
  violations: string[];
  counts: Record<string, number>;
}

export interface Attack {
  name: string;
  /** Refusing the well-behaved clients is the designed answer (the total connection limit). */
  refusesBystanders?: boolean;
  run(ctx: AttackContext): Promise<AttackOutcome>;
}

const remaining = (ctx: AttackContext): number => Math.max(0, ctx.until - Date.now());

/** Runs `n` copies of `body(i)` at once and returns when all have finished. */
const parallel = (n: number, body: (i: number) => Promise<void>): Promise<void> => Promise.all(Array.from({ length: n }, (_, i) => body(i))).then(() => undefined);

/**
 * Slowloris: many connections, each trickling a byte every few hundred ms: a third never finish
 * their first command line, a third are inside DATA, a third spell out NOOPs byte by byte.
 */
export const slowloris = (connections: number, perIp = 100): Attack => ({
  name: `slowloris (${connections} conns)`,
  async run(ctx) {
    const n = connections;
    const counts = { connected: 0, refused: 0, closedEarly: 0, bytes: 0, noopReplies: 0 };
    const violations: string[] = [];
    await parallel(n, async (i) => {
      // Spread the connects over the first second.
      await sleep(Math.floor((i / n) * 1000));
      let r: Raw;
      try {
        r = await Raw.open(ctx.server.port, attackerIp(i % Math.ceil(n / perIp)));
      } catch (e) {
        violations.push(`slowloris connect: ${(e as Error).message}`);
        return;
      }
      await r.until(() => r.lines.length > 0, 15_000);
      if (!r.text.startsWith('220')) {
        counts.refused++;
        r.close();
        return;
      }
      counts.connected++;
      const kind = i % 3;
      if (kind === 1) await r.write('EHLO slow.test\r\nMAIL FROM:<slow@example.com>\r\nRCPT TO:<slow@localhost>\r\nDATA\r\nSubject: slow\r\n\r\n');
      const trickle = kind === 0 ? 'EHLO slowly.and.never.finishing.the.line.' : kind === 1 ? 'slow body text, one byte at a time\r\n' : 'NOOP\r\n';
      let k = 0;
      while (Date.now() < ctx.until && !r.closed) {
        await sleep(150 + ((i * 37 + k * 11) % 300));
        if (kind === 0 && k >= trickle.length) k = 0;
        await r.write(trickle[k % trickle.length]);
        counts.bytes++;
        k++;
      }
      if (r.closed) counts.closedEarly++;
      if (kind === 2) counts.noopReplies += r.replies.filter((l) => l.startsWith('250 2.0.0')).length;
      const bad = badReplyLine(r.lines);
      if (bad) violations.push(`slowloris: bad reply line ${JSON.stringify(bad)}`);
      r.close();
    });
    return { notes: `${counts.connected} held, ${counts.bytes} bytes trickled, ${counts.closedEarly} closed by the server`, violations, counts };
  },
});

/**
 * Opens one connection for a flood and reads its first line: a greeting is held (and the
 * most held at once counted, as held connections may time out and free their slots), a
 * 421 4.7.0 is the designed refusal, anything else (or no answer in 15 s) a violation.
 */
async function knock(
  port: number,
  ip: string,
  held: Raw[],
  counts: { greeted: number; mostAtOnce: number; refused421: number; other: number },
  violations: string[],
): Promise<'greeted' | 'refused' | 'other'> {
  let r: Raw;
  try {
    r = await Raw.open(port, ip);
  } catch (e) {
    counts.other++;
    violations.push(`connect: ${(e as Error).message}`);
    return 'other';
  }
  await r.until(() => r.lines.length > 0, 15_000);
  if (r.text.startsWith('220')) {
    counts.greeted++;
    held.push(r);
    counts.mostAtOnce = Math.max(counts.mostAtOnce, held.filter((h) => !h.closed).length);
    return 'greeted';
  }
  r.close();
  if (r.text.startsWith('421 4.7.0')) {
    counts.refused421++;
    return 'refused';
  }
  counts.other++;
  violations.push(`neither 220 nor 421 4.7.0 within 15 s: ${JSON.stringify(r.text.slice(0, 80))}`);
  return 'other';
}

/**
 * One address opens `factor` times its per-address limit as fast as it can and holds what it
 * gets; the rest must get 421 at once, never a hang.
 */
export const floodOneAddress = (perIpLimit: number, factor = 3): Attack => ({
  name: `conn flood, 1 address (${factor}x limit)`,
  async run(ctx) {
    const ip = attackerIp(20);
    const held: Raw[] = [];
    const counts = { greeted: 0, mostAtOnce: 0, refused421: 0, other: 0, slowest421Ms: 0, rounds: 0 };
    const violations: string[] = [];
    const one = async (): Promise<void> => {
      const t0 = Date.now();
      if ((await knock(ctx.server.port, ip, held, counts, violations)) === 'refused') {
        counts.slowest421Ms = Math.max(counts.slowest421Ms, Date.now() - t0);
      }
    };
    await parallel(perIpLimit * factor, one);
    // Keep knocking while holding the limit's worth.
    while (Date.now() < ctx.until) {
      counts.rounds++;
      await parallel(20, one);
      await sleep(50);
    }
    if (counts.mostAtOnce > perIpLimit) violations.push(`${counts.mostAtOnce} connections open at once from one address, limit ${perIpLimit}`);
    for (const r of held) r.close();
    return { notes: `${counts.mostAtOnce} admitted at once, ${counts.refused421} got 421 (slowest ${counts.slowest421Ms} ms)`, violations, counts };
  },
});

/**
 * Many addresses together open more than the total limit and hold them: over the limit, every
 * new connection (the well-behaved ones too) gets 421 4.7.0 at once, the designed answer.
 */
export const floodTotal = (total: number, perIp: number): Attack => ({
  name: `conn flood, total (limit ${total})`,
  refusesBystanders: true,
  async run(ctx) {
    const addresses = Math.ceil((total * 1.25) / perIp);
    const held: Raw[] = [];
    const counts = { greeted: 0, mostAtOnce: 0, refused421: 0, other: 0 };
    const violations: string[] = [];
    // All at once (each bounded by its own timeouts), so the limit is crossed even on a slow machine.
    await parallel(addresses * perIp, async (i) => {
      await knock(ctx.server.port, attackerIp(40 + (i % addresses)), held, counts, violations);
    });
    if (counts.mostAtOnce > total) violations.push(`${counts.mostAtOnce} connections open at once, limit ${total}`);
    await sleep(remaining(ctx));
    for (const r of held) r.close();
    return { notes: `${counts.mostAtOnce} held at once, ${counts.refused421} got 421; over the limit the server refuses everyone (by design)`, violations, counts };
  },
});

/** Connect-and-drop as fast as possible: half-sent commands, garbage, resets. */
export const churn = (loops: number): Attack => ({
  name: `conn churn (${loops} loops)`,
  async run(ctx) {
    const counts = { connects: 0, failures: 0 };
    const violations: string[] = [];
    await parallel(loops, async (i) => {
      let k = 0;
      while (Date.now() < ctx.until) {
        k++;
        let r: Raw;
        try {
          r = await Raw.open(ctx.server.port, attackerIp(60 + i));
        } catch (e) {
          counts.failures++;
          if (counts.failures <= 3) violations.push(`churn connect: ${(e as Error).message}`);
          await sleep(50);
          continue;
        }
        counts.connects++;
        const mode = k % 4;
        if (mode === 1) await r.write('EHLO churn.test\r\nMAIL FROM:<');
        else if (mode === 2) await r.write(Buffer.from([0, 255, 13, 10, 22, 3, 1, 0, 200]));
        else if (mode === 3) await r.write('EHLO churn.test\r\nMAIL FROM:<c@example.com>\r\nRCPT TO:<c@localhost>\r\nDATA\r\nSubject: cut\r\n\r\nhalf a mess');
        if (mode !== 0) await sleep(5);
        r.close();
      }
    });
    return { notes: `${counts.connects} connects dropped at random points`, violations, counts };
  },
});

/**
 * Pipelining floods: readers write thousands of commands in one write and check that every one
 * gets its reply, in order; hoarders write as many and never read a reply.
 */
export const pipeliningFlood = (commands: number, readers = 3, hoarders = 2): Attack => ({
  name: `pipelining flood (${commands} cmds/write)`,
  async run(ctx) {
    const counts = { batches: 0, commands: 0, hoarded: 0 };
    const violations: string[] = [];
    const group = ['NOOP', 'MAIL FROM:<p@example.com>', 'RCPT TO:<pipe@localhost>', 'RCPT TO:<pipe2@localhost>', 'RSET', 'HELP'];
    const codes = [250, 250, 250, 250, 250, 214];
    const reader = async (i: number): Promise<void> => {
      while (Date.now() < ctx.until) {
        let r: Raw;
        try {
          r = await Raw.open(ctx.server.port, attackerIp(80 + i));
        } catch (e) {
          violations.push(`pipelining connect: ${(e as Error).message}`);
          return;
        }
        const lines = ['EHLO pipe.test'];
        const want = [220, 250];
        while (lines.length < commands) {
          lines.push(...group);
          want.push(...codes);
        }
        lines.push('QUIT');
        want.push(221);
        await r.write(lines.map((l) => `${l}\r\n`).join(''));
        await r.until(() => r.replies.length >= want.length, 20_000);
        const got = r.replies.map((l) => Number(l.slice(0, 3)));
        const at = want.findIndex((c, k) => got[k] !== c);
        if (at >= 0 && violations.length < 5) violations.push(`pipelined reply ${at} (${lines[at - 1] ?? 'greeting'}) was ${r.replies[at] ?? 'missing'}, expected ${want[at]}`);
        if (got.length > want.length && violations.length < 5) violations.push(`${got.length - want.length} replies too many`);
        counts.batches++;
        counts.commands += lines.length;
        r.close();
      }
    };
    const hoarder = async (i: number): Promise<void> => {
      let r: Raw;
      try {
        r = await Raw.open(ctx.server.port, attackerIp(90 + i));
      } catch (e) {
        violations.push(`hoarder connect: ${(e as Error).message}`);
        return;
      }
      r.socket.pause();
      // Never reads: the server must stop reading too once its replies back up.
      const batch = 'NOOP\r\n'.repeat(commands * 4);
      while (Date.now() < ctx.until && !r.closed) {
        const sent = r.socket.write(batch);
        counts.hoarded += commands * 4;
        if (!sent) await Promise.race([new Promise((res) => r.socket.once('drain', res)), sleep(remaining(ctx))]);
      }
      r.close();
    };
    await Promise.all([parallel(readers, reader), parallel(hoarders, hoarder)]);
    return { notes: `${counts.commands} commands in ${counts.batches} one-write batches, all answered in order; ${counts.hoarded} written by clients that never read`, violations, counts };
  },
});

/**
 * 100 MB lines: one as a command line, one inside DATA, and one arriving while the session
 * waits out a failed-AUTH delay (the input must not pile up in memory meanwhile).
 */
export const hugeLines = (megabytes: number): Attack => ({
  name: `${megabytes} MB lines x3`,
  async run(ctx) {
    const counts = { bytes: 0, rounds: 0, heldDuringDelayKB: 0 };
    const violations: string[] = [];
    const chunk = Buffer.alloc(1 << 16, 'A');
    const total = megabytes * 2 ** 20;
    const stream = async (r: Raw, limit = total, stopAt = Infinity, stop = (): boolean => false): Promise<number> => {
      let sent = 0;
      while (sent < limit && !r.closed && Date.now() < stopAt && !stop()) {
        await r.write(chunk);
        sent += chunk.length;
      }
      counts.bytes += sent;
      return sent;
    };
    const expectReplies = async (r: Raw, what: string, prefixes: string[], timeoutMs = 30_000): Promise<void> => {
      await r.until(() => r.replies.length >= prefixes.length, timeoutMs);
      const got = r.replies;
      for (const [k, p] of prefixes.entries()) {
        if (!got[k]?.startsWith(p)) {
          violations.push(`${what}: reply ${k} ${JSON.stringify(got[k] ?? 'missing')}, expected ${p}`);
          return;
        }
      }
    };
    const commandLine = async (): Promise<void> => {
      const r = await Raw.open(ctx.server.port, attackerIp(100));
      await r.write('EHLO huge.test\r\n');
      await stream(r);
      await r.write('\r\nNOOP\r\nQUIT\r\n');
      await expectReplies(r, 'huge command line', ['220', '250 ', '500 5.5.2', '250 2.0.0', '221']);
      r.close();
    };
    const dataLine = async (): Promise<void> => {
      const r = await Raw.open(ctx.server.port, attackerIp(101));
      await r.write('EHLO huge.test\r\nMAIL FROM:<h@example.com>\r\nRCPT TO:<huge@localhost>\r\nDATA\r\nSubject: huge\r\n\r\n');
      await stream(r);
      await r.write('\r\n.\r\nNOOP\r\nQUIT\r\n');
      await expectReplies(r, 'huge DATA line', ['220', '250 ', '250 ', '250 ', '354', '552 5.3.4', '250 2.0.0', '221']);
      r.close();
    };
    const duringDelay = async (): Promise<void> => {
      const r = await Raw.open(ctx.server.authPort, attackerIp(102));
      await r.write('EHLO huge.test\r\n');
      await r.until(() => r.replies.length >= 2, 5000);
      await r.write(`AUTH PLAIN ${Buffer.from(`\0${AUTH_USER}\0wrong`).toString('base64')}\r\n`);
      // The 535 comes after the failure delay: what the client can push meanwhile shows whether the server stops reading.
      // (A write that TCP holds back only returns once the server reads again, after the 535.)
      const sent = await stream(r, total, Date.now() + 1500, () => r.replies.length > 2);
      counts.heldDuringDelayKB = Math.max(counts.heldDuringDelayKB, Math.round(sent / 1024));
      await stream(r, total - sent);
      await r.write('\r\nNOOP\r\nQUIT\r\n');
      await expectReplies(r, 'huge line during an AUTH delay', ['220', '250 ', '535 5.7.8', '500 5.5.2', '250 2.0.0', '221']);
      r.close();
    };
    do {
      await Promise.all([commandLine(), dataLine(), duringDelay()]);
      counts.rounds++;
    } while (Date.now() < ctx.until - 3000);
    return {
      notes: `${Math.round(counts.bytes / 2 ** 20)} MB sent; while an AUTH failure was delayed, ${counts.heldDuringDelayKB} KB went out before TCP pushed back`,
      violations,
      counts,
    };
  },
});

/** NUL bytes and invalid UTF-8 in commands, addresses, headers and bodies. */
export const BAD_BYTES_LINES: Buffer[] = [
  Buffer.from('NO\0OP\r\n', 'latin1'),
  Buffer.from('\xff\xfe\xfd\r\n', 'latin1'),
  Buffer.from('EHLO \xc0\xaf\xed\xa0\x80.test\r\n', 'latin1'),
  Buffer.from('EHLO bad\0bytes.test\r\n', 'latin1'),
  Buffer.from('MAIL FROM:<a\0b@example.com>\r\n', 'latin1'),
  Buffer.from('MAIL FROM:<\xff\xfe@example.com>\r\n', 'latin1'),
  Buffer.from('MAIL FROM:<bytes@example.com> SMTPUTF8\r\n', 'latin1'),
  Buffer.from('RCPT TO:<\xff\xfe\xc0\xaf@localhost>\r\n', 'latin1'),
  Buffer.from('RCPT TO:<nul\0@localhost>\r\n', 'latin1'),
  Buffer.from('RCPT TO:<bytes@localhost> NOTIFY=\xff\0\r\n', 'latin1'),
  Buffer.from('RCPT TO:<bytes@localhost>\r\n', 'latin1'),
  Buffer.from('VRFY \0\xff\r\n', 'latin1'),
];

export const BAD_BYTES_MESSAGE = Buffer.from(
  'Subject: \xff\xfe invalid \xc0\xaf utf-8 \0 and NUL\r\nX-Nul: a\0b\r\nFrom: "\xed\xa0\x80" <bytes@example.com>\r\n\r\nbody \0\0\0 \xff\xfe\xfd \xc3\x28 \xf0\x28\x8c\x28\r\n\0.\r\n\xff\r\n',
  'latin1',
);

export const badBytes = (sessions: number): Attack => ({
  name: 'NUL and invalid UTF-8',
  async run(ctx) {
    const counts = { sessions: 0, lines: 0, accepted: 0, refused: 0 };
    const violations: string[] = [];
    await parallel(sessions, async (i) => {
      while (Date.now() < ctx.until) {
        let r: Raw;
        try {
          r = await Raw.open(ctx.server.port, attackerIp(110 + i));
        } catch (e) {
          violations.push(`connect: ${(e as Error).message}`);
          return;
        }
        for (const line of BAD_BYTES_LINES) await r.write(line);
        await r.write('DATA\r\n');
        const want = 1 + BAD_BYTES_LINES.length + 1;
        await r.until(() => r.replies.length >= want, 10_000);
        const dataReply = r.replies[want - 1] ?? '';
        if (dataReply.startsWith('354')) {
          await r.write(Buffer.concat([BAD_BYTES_MESSAGE, Buffer.from('.\r\nQUIT\r\n')]));
          await r.until(() => r.replies.length >= want + 2, 10_000);
          const final = r.replies[want] ?? '';
          if (final.startsWith('250')) counts.accepted++;
          else if (/^5\d\d/.test(final)) counts.refused++;
          else if (violations.length < 5) violations.push(`end of a message with NUL and invalid UTF-8: ${JSON.stringify(final || 'no reply')}`);
        } else if (violations.length < 5) violations.push(`DATA after the bad-bytes envelope: ${JSON.stringify(dataReply || 'no reply')}`);
        const bad = badReplyLine(r.lines);
        if (bad && violations.length < 5) violations.push(`bad reply line ${JSON.stringify(bad)}`);
        counts.sessions++;
        counts.lines += BAD_BYTES_LINES.length;
        r.close();
      }
    });
    return { notes: `${counts.sessions} sessions, ${counts.lines} bad lines, message accepted ${counts.accepted} / refused ${counts.refused}`, violations, counts };
  },
});

/** Ends of DATA that are not CRLF.CRLF, each followed by a smuggled second transaction. */
export const SMUGGLING_VARIANTS: [string, string][] = [
  ['LF.LF', '\n.\n'],
  ['CRLF.LF', '\r\n.\n'],
  ['LF.CRLF', '\n.\r\n'],
  ['CR.CR', '\r.\r'],
  ['CRLF.CR', '\r\n.\r'],
  ['CRLF.NUL CRLF', '\r\n.\0\r\n'],
  ['CRLF.SP CRLF', '\r\n. \r\n'],
  ['CRLF.TAB CRLF', '\r\n.\t\r\n'],
  ['CRLF.CR CRLF', '\r\n.\r\r\n'],
  ['CRLF CR.CRLF', '\r\n\r.\r\n'],
  ['LF CR.CRLF', '\n\r.\r\n'],
  ['CRLF.CR.CRLF', '\r\n.\r.\r\n'],
  ['CRLF NBSP.CRLF', '\r\n\xa0.\r\n'],
];

/** The bytes a smuggling client sends after DATA's 354: a body, the fake end, a second transaction, the real end. */
export function smugglingPayload(seq: string, victim: string): Buffer {
  return Buffer.from(
    `Subject: first\r\n\r\nbody${seq}MAIL FROM:<evil@example.com>\r\nRCPT TO:<${victim}@localhost>\r\nDATA\r\nSubject: smuggled\r\n\r\nspoof\r\n.\r\n`,
    'latin1',
  );
}

export const smuggling = (sessions: number): Attack => ({
  name: 'SMTP smuggling',
  async run(ctx) {
    const counts = { messages: 0, bdat: 0 };
    const violations: string[] = [];
    await parallel(sessions, async (i) => {
      let k = i;
      while (Date.now() < ctx.until) {
        const [name, seq] = SMUGGLING_VARIANTS[k++ % SMUGGLING_VARIANTS.length];
        let r: Raw;
        try {
          r = await Raw.open(ctx.server.port, attackerIp(120 + i));
        } catch (e) {
          violations.push(`connect: ${(e as Error).message}`);
          return;
        }
        const bdat = k % 5 === 0;
        await r.write('EHLO smuggler.test\r\nMAIL FROM:<s@example.com>\r\nRCPT TO:<smuggled@localhost>\r\n');
        const payload = smugglingPayload(seq, 'victim');
        if (bdat) {
          // In BDAT everything is data: a CRLF.CRLF inside a chunk ends nothing.
          await r.write(Buffer.concat([Buffer.from(`BDAT ${payload.length} LAST\r\n`), payload, Buffer.from('NOOP\r\n')]));
          counts.bdat++;
        } else {
          await r.write('DATA\r\n');
          await r.until(() => r.replies.length >= 5, 5000);
          await r.write(Buffer.concat([payload, Buffer.from('NOOP\r\n')]));
        }
        const want = ['220', '250', '250', '250', ...(bdat ? [] : ['354']), '250', '250 2.0.0'];
        await r.until(() => r.replies.length >= want.length, 10_000);
        // A little longer: a smuggled transaction would add replies.
        await r.until(() => r.replies.length > want.length, 100);
        const got = r.replies;
        if ((got.length !== want.length || want.some((w, j) => !got[j].startsWith(w))) && violations.length < 5) {
          violations.push(`${name}${bdat ? ' (BDAT)' : ''}: replies ${JSON.stringify(got.slice(3))}`);
        }
        counts.messages++;
        r.close();
      }
    });
    const victim = await ctx.server.mailboxCount('victim');
    if (victim) violations.push(`${victim} smuggled message(s) delivered to the victim`);
    return { notes: `${counts.messages} messages (${counts.bdat} by BDAT) over ${SMUGGLING_VARIANTS.length} variants, 0 smuggled`, violations, counts };
  },
});

/**
 * STARTTLS command injection (CVE-2011-0411): commands pipelined behind STARTTLS in the same
 * packet must be discarded, plain text sent after the 220 must not be answered, and a
 * handshake of garbage must end the connection.
 */
export const starttlsInjection = (sessions: number): Attack => ({
  name: 'STARTTLS injection',
  async run(ctx) {
    const counts = { injected: 0, plainAfter220: 0, garbage: 0 };
    const violations: string[] = [];
    const note = (v: string): void => void (violations.length < 5 && violations.push(v));
    await parallel(sessions, async (i) => {
      // Client i starts with mode i % 3: three clients cover every mode in their first round.
      let k = i - 1;
      while (Date.now() < ctx.until) {
        k++;
        const r = await Raw.open(ctx.server.port, attackerIp(130 + i)).catch((e: Error) => (note(`connect: ${e.message}`), null));
        if (!r) return;
        await r.write('EHLO inject.test\r\n');
        await r.until(() => r.replies.length >= 2, 5000);
        const mode = k % 3;
        if (mode === 0) {
          await r.write('STARTTLS\r\nMAIL FROM:<injected@example.com>\r\nRCPT TO:<victim@localhost>\r\n');
          await r.until(() => r.replies.length >= 3, 5000);
          if (!r.replies[2]?.startsWith('220')) note(`STARTTLS: ${JSON.stringify(r.replies[2])}`);
          r.socket.removeAllListeners('data');
          const tls = tlsConnect({ socket: r.socket, rejectUnauthorized: false, servername: 'localhost' });
          let text = '';
          tls.setEncoding('latin1');
          tls.on('data', (d: string) => (text += d));
          tls.on('error', () => undefined);
          const ok = await new Promise<boolean>((res) => {
            tls.once('secureConnect', () => res(true));
            tls.once('error', () => res(false));
            setTimeout(() => res(false), 5000);
          });
          if (!ok) note('TLS handshake after STARTTLS failed');
          else {
            // Had the injected MAIL counted, this MAIL would be nested (503) and the RCPT would already be in.
            tls.write('EHLO inject.test\r\nMAIL FROM:<after@example.com>\r\nRSET\r\nQUIT\r\n');
            const deadline = Date.now() + 5000;
            while (!/^221 /m.test(text) && Date.now() < deadline) await sleep(10);
            const finals = text.split('\r\n').filter((l) => l && l[3] !== '-');
            if (finals.length !== 4 || !finals[0].startsWith('250') || !finals[1].startsWith('250') || !finals[2].startsWith('250') || !finals[3].startsWith('221'))
              note(`after STARTTLS with injected commands: ${JSON.stringify(finals)}`);
            counts.injected++;
          }
          tls.destroy();
        } else if (mode === 1) {
          await r.write('STARTTLS\r\n');
          await r.until(() => r.replies.length >= 3, 5000);
          // Plain text where the ClientHello belongs: no SMTP reply may follow, only a close.
          await r.write('NOOP\r\nMAIL FROM:<plain@example.com>\r\n');
          await r.until(() => r.closed, 5000);
          if (r.replies.length > 3) note(`plain text after STARTTLS's 220 was answered: ${JSON.stringify(r.replies.slice(3))}`);
          if (!r.closed) note('plain text after STARTTLS: the connection stayed open 5 s');
          counts.plainAfter220++;
        } else {
          await r.write('STARTTLS\r\n');
          await r.until(() => r.replies.length >= 3, 5000);
          await r.write(Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff, ...Array.from({ length: 64 }, (_, j) => (j * 53) & 0xff)]));
          await r.until(() => r.closed, 5000);
          if (!r.closed) note('a garbage handshake: the connection stayed open 5 s');
          counts.garbage++;
        }
        r.close();
      }
    });
    return { notes: `${counts.injected} injections discarded, ${counts.plainAfter220} plain-after-220, ${counts.garbage} garbage handshakes`, violations, counts };
  },
});

/** AUTH exchanges with malformed base64; [what to send, the reply code expected for each line]. */
export const BAD_AUTH: [string[], number[]][] = [
  [['AUTH PLAIN !!!!'], [501]],
  [['AUTH PLAIN ===='], [501]],
  [['AUTH PLAIN YWJj'], [501]],
  [['AUTH PLAIN YWJjZA='], [501]],
  [['AUTH PLAIN AGFsaWNl'], [501]],
  [['AUTH PLAIN', 'not base64 at all'], [334, 501]],
  [['AUTH PLAIN', 'YW Jj'], [334, 501]],
  [['AUTH PLAIN', 'AAAA\0AAA'], [334, 501]],
  [['AUTH PLAIN', `${'QUFB'.repeat(3200)}`], [334, 500]],
  [['AUTH LOGIN', '%%%%'], [334, 501]],
  [['AUTH LOGIN', '=', '////\xff'], [334, 334, 501]],
  [['AUTH LOGIN', Buffer.from('\xff\xfe\xc0', 'latin1').toString('base64'), '*'], [334, 334, 501]],
  [['AUTH CRAM-MD5', 'Zm9v'], [334, 501]],
  [['AUTH CRAM-MD5 Zm9v'], [501]],
  [['AUTH PLAIN', Buffer.from(`\0${AUTH_USER}`).toString('base64')], [334, 501]],
];

export const authBadBase64 = (sessions: number): Attack => ({
  name: 'AUTH malformed base64',
  async run(ctx) {
    const counts = { exchanges: 0 };
    const violations: string[] = [];
    const note = (v: string): void => void (violations.length < 5 && violations.push(v));
    await parallel(sessions, async (i) => {
      let k = i;
      while (Date.now() < ctx.until) {
        const r = await Raw.open(ctx.server.authPort, attackerIp(140 + i)).catch((e: Error) => (note(`connect: ${e.message}`), null));
        if (!r) return;
        await r.write('EHLO auth.test\r\n');
        await r.until(() => r.replies.length >= 2, 5000);
        // Fewer than limits.errors (20) failures per session.
        for (let n = 0; n < 6 && !r.closed; n++) {
          const [lines, codes] = BAD_AUTH[k++ % BAD_AUTH.length];
          for (const [j, line] of lines.entries()) {
            const before = r.replies.length;
            await r.write(Buffer.from(`${line}\r\n`, 'latin1'));
            await r.until(() => r.replies.length > before, 5000);
            const got = r.replies[before] ?? 'no reply';
            if (!got.startsWith(String(codes[j]))) note(`${JSON.stringify(lines.map((l) => l.slice(0, 40)))} step ${j}: ${JSON.stringify(got)}, expected ${codes[j]}`);
          }
          counts.exchanges++;
        }
        if (r.replies.some((l) => l.startsWith('235'))) note('a malformed AUTH authenticated');
        r.close();
      }
    });
    return { notes: `${counts.exchanges} malformed exchanges, none authenticated`, violations, counts };
  },
});

/**
 * Scripts that misbehave under load: clients whose EHLO makes DoMAILFROM loop forever, hog
 * memory or throw. The budgets must stop the first two with 451 4.3.0 (the session goes on
 * without the script), the error is ignored, and the message is then accepted.
 */
export const scriptMisbehaviour = (clients: number): Attack => ({
  name: 'script loop / hog / error',
  async run(ctx) {
    const counts = { stopped: 0, errors: 0, accepted: 0 };
    const violations: string[] = [];
    const note = (v: string): void => void (violations.length < 5 && violations.push(v));
    const kinds = ['loop', 'hog', 'error'];
    await parallel(clients, async (i) => {
      let k = i;
      while (Date.now() < ctx.until) {
        const kind = kinds[k++ % kinds.length];
        const r = await Raw.open(ctx.server.port, attackerIp(150 + i)).catch((e: Error) => (note(`connect: ${e.message}`), null));
        if (!r) return;
        await r.write(`EHLO ${kind}.evil\r\nMAIL FROM:<evil@example.com>\r\n`);
        await r.until(() => r.replies.length >= 3, 15_000);
        const mail = r.replies[2] ?? 'no reply';
        if (kind === 'error') {
          if (!mail.startsWith('250')) note(`a DoMAILFROM error should leave the default 250: ${JSON.stringify(mail)}`);
          else counts.errors++;
        } else if (mail.startsWith('451 4.3.0')) counts.stopped++;
        else note(`a ${kind} in DoMAILFROM: ${JSON.stringify(mail)}, expected 451 4.3.0`);
        // The script is off for the rest of the session (or never failed): mail goes through.
        await r.write('RSET\r\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<evil@localhost>\r\nDATA\r\n');
        await r.until(() => r.replies.length >= 7, 15_000);
        await r.write('Subject: after the runaway\r\n\r\nstill served\r\n.\r\nQUIT\r\n');
        await r.until(() => r.replies.length >= 9, 15_000);
        if (r.replies[7]?.startsWith('250')) counts.accepted++;
        else note(`the message after a ${kind}: ${JSON.stringify(r.replies.slice(3))}`);
        r.close();
      }
    });
    return { notes: `${counts.stopped} runaways stopped by the budgets, ${counts.errors} hook errors, ${counts.accepted} messages accepted after them`, violations, counts };
  },
});

// ---- measuring ---------------------------------------------------------------------------------

export interface PhaseResult {
  name: string;
  refusesBystanders: boolean;
  bystanders: Stats;
  /** Peak server RSS during the phase, and its RSS at the phase's start, MB. */
  peakRssMB: number;
  startRssMB: number;
  outcome: AttackOutcome | null;
  serverAlive: boolean;
  seconds: number;
}

/**
 * Runs `attack` (or nothing, for the baseline) for `seconds` while the bystanders send, and
 * measures them over exactly that window.
 */
export async function phase(server: AttackServer, bystanders: Bystanders, attack: Attack | null, seconds: number, scale = 1): Promise<PhaseResult> {
  const t0 = Date.now();
  bystanders.take();
  const startRssMB = server.rssMB();
  server.resetPeak();
  const outcome = attack ? await attack.run({ server, until: t0 + seconds * 1000, scale }) : (await sleep(seconds * 1000), null);
  const stats = bystanders.take();
  return {
    name: attack?.name ?? 'baseline (no attack)',
    refusesBystanders: !!attack?.refusesBystanders,
    bystanders: stats,
    peakRssMB: Math.max(server.peakRssMB, server.rssMB()),
    startRssMB,
    outcome,
    serverAlive: server.alive,
    seconds: (Date.now() - t0) / 1000,
  };
}

const fmt = (n: number, d = 0): string => (Number.isFinite(n) ? n.toFixed(d) : '-');

/** The table: bystanders' success and latency during each attack beside the baseline. */
export function table(results: PhaseResult[]): string {
  const head = ['attack', 'msgs', 'ok %', 'p50 ms', 'p99 ms', 'max ms', 'RSS MB', 'server', 'attack result'];
  const rows = results.map((r) => [
    r.name,
    String(r.bystanders.attempted),
    fmt(r.bystanders.successRate * 100, 1) + (r.refusesBystanders && r.bystanders.successRate < 1 ? '*' : ''),
    fmt(r.bystanders.p50),
    fmt(r.bystanders.p99),
    fmt(r.bystanders.max),
    `${fmt(r.startRssMB)}→${fmt(r.peakRssMB)}`,
    r.serverAlive ? 'up' : 'DOWN',
    (r.outcome?.violations.length ? `VIOLATIONS: ${r.outcome.violations.join('; ')}` : r.outcome?.notes) ?? '',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => (i === head.length - 1 ? 0 : row[i].length))));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 || i === cells.length - 1 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const out = [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)];
  if (results.some((r) => r.refusesBystanders)) out.push('* over limits.connections every new connection gets 421 4.7.0, the well-behaved ones too: the designed answer.');
  return out.join('\n');
}

export interface Bounds {
  /** Lowest acceptable success rate of the well-behaved clients (ignored for refusing attacks). */
  minSuccess: number;
  /** p99 end-of-DATA latency that means gross failure, ms. */
  maxP99Ms: number;
  /** Server RSS that means runaway memory, MB. */
  maxRssMB: number;
  /** Fewest well-behaved messages the window must see (the server kept serving at all). */
  minMessages: number;
}

/** What is wrong with a phase, as readable lines; empty when the attack was contained. */
export function problems(r: PhaseResult, b: Bounds): string[] {
  const out: string[] = [];
  const s = r.bystanders;
  if (!r.serverAlive) out.push('the server died');
  for (const v of r.outcome?.violations ?? []) out.push(`violation: ${v}`);
  if (r.refusesBystanders) {
    const other = s.errors.filter((e) => !e.startsWith('421 4.7.0'));
    if (other.length) out.push(`well-behaved clients failed other than by 421 4.7.0: ${other.join(' | ')}`);
  } else {
    if (s.successRate < b.minSuccess) out.push(`well-behaved success ${(s.successRate * 100).toFixed(1)}% < ${b.minSuccess * 100}%: ${s.errors.join(' | ')}`);
    if (s.attempted < b.minMessages) out.push(`only ${s.attempted} well-behaved messages in ${r.seconds.toFixed(1)} s`);
    if (s.p99 > b.maxP99Ms) out.push(`well-behaved p99 ${s.p99.toFixed(0)} ms > ${b.maxP99Ms} ms`);
  }
  if (r.peakRssMB > b.maxRssMB) out.push(`server RSS ${r.peakRssMB.toFixed(0)} MB > ${b.maxRssMB} MB`);
  return out;
}
