/**
 * The peer table (scenarios a-c): moonpost (1 and 2 workers, durable queue, without and with
 * bench/all-hooks.lua) beside a private Postfix (durable queue, Maildir), Haraka (1 process and
 * nodes=2, accepting and discarding without writing or fsyncing; and nodes=2 storing each message
 * durably in a Maildir before its 250 through a small plugin) and smtp-sink (accepts and discards:
 * the ceiling of what the client and the loopback allow), all on loopback, all started by the bench.
 * Every server is fed the same load by Postfix's smtp-source (20 connections) while the latency probe
 * (probe.ts) times the end of DATA on one more connection; memory is sampled over each server's
 * process tree. Per repetition the order of the servers alternates; the table reports the median
 * rate, the latency percentiles over all repetitions' samples, and the highest peak memory.
 * Every run must be fully accepted and, for moonpost and Postfix, delivered to the Maildir (moonpost
 * with the script: every delivered message carries the header its DoDATAStart adds; without: none).
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { onCleanup } from './cleanup.js';
import { ensureHaraka, harakaCacheDir, HARAKA_VERSION, startHaraka } from './haraka.js';
import { countWithHeader } from './header-check.js';
import { countFiles, emptyDir } from './maildir.js';
import { startMoonpost, WorkersUnsupportedError } from './moonpost.js';
import { servers as selectedServers, type Options, type Scenario, type ServerId } from './options.js';
import { startPostfix } from './postfix.js';
import { percentile, startProbe, type ProbeResult } from './probe.js';
import { findBinary, freePort, sleep } from './proc.js';
import { startTreeWindow, treeCpu } from './proctree.js';
import { queueLeftovers } from './queue.js';
import { startSink } from './sink.js';
import { runSource } from './smtp-source.js';
import { fmt, median, renderTable, type Section } from './table.js';

export const ALL_HOOKS_LUA = fileURLToPath(new URL('./all-hooks.lua', import.meta.url));
/** The header line all-hooks.lua's DoDATAStart adds. */
export const SCRIPT_HEADER = 'X-Bench-Script: all-hooks';

const SBIN = (name: string): string[] => [`/usr/sbin/${name}`, `/usr/bin/${name}`, `/usr/local/sbin/${name}`];
const log = (s: string): void => void process.stderr.write(`${s}\n`);

export interface BenchContext {
  opts: Options;
  /** smtp-source */
  source: string;
  /** dist/cli.js */
  cli: string;
  /** The run's temp folder. */
  root: string;
  domain: string;
}

/** A running server of the table. */
interface Server {
  id: ServerId;
  label: string;
  /** What happens to an accepted message. */
  stores: string;
  port: number;
  /** Process-tree roots whose memory is sampled. */
  roots(): number[];
  /** A monotonic count of accepted (or delivered) messages. */
  count(): Promise<number>;
  /** Prepares a run (e.g. empties the Maildir). */
  reset(): Promise<void>;
  /** After a run: a problem with what was delivered, or null. */
  verify(): Promise<string | null>;
  diagnose(): string | null;
  stop(): Promise<void>;
}

/** A row that could not run, with the reason shown in the table. */
interface Missing {
  id: ServerId;
  label: string;
  stores: string;
  reason: string;
}

export interface Trial {
  server: ServerId;
  scenario: string;
  rate: number | null;
  samples: number[];
  peakRssMb: number | null;
  peakPssMb: number | null;
  /** The server's processes' CPU time per accepted message (ms), and the kernel's share of it. */
  cpuMsPerMsg: number | null;
  sysShare: number | null;
  problem: string | null;
}

export interface PeerResults {
  section: Section;
  trials: Trial[];
  labels: Map<ServerId, string>;
}

const MOONPOST: Record<string, { workers?: number; script: boolean; noFsync?: boolean; label: string }> = {
  'moonpost-1': { script: false, label: 'moonpost, 1 process' },
  'moonpost-1-hooks': { script: true, label: 'moonpost, 1 process, all hooks' },
  'moonpost-2': { workers: 2, script: false, label: 'moonpost, workers: 2' },
  'moonpost-2-hooks': { workers: 2, script: true, label: 'moonpost, workers: 2, all hooks' },
  // Beside Haraka's discarding rows: the same work without the two flushes durability costs.
  'moonpost-2-hooks-nofsync': { workers: 2, script: true, noFsync: true, label: 'moonpost, workers: 2, all hooks, no fsync' },
};
const LABELS: Record<ServerId, string> = {
  sink: 'smtp-sink (ceiling)',
  postfix: 'Postfix',
  'haraka-1': `Haraka ${HARAKA_VERSION}, 1 process`,
  'haraka-2': `Haraka ${HARAKA_VERSION}, nodes=2`,
  'haraka-2-maildir': `Haraka ${HARAKA_VERSION}, nodes=2, Maildir`,
  ...Object.fromEntries(Object.entries(MOONPOST).map(([k, v]) => [k, v.label])),
} as Record<ServerId, string>;
const STORES: Record<ServerId, string> = {
  sink: 'discards',
  postfix: 'fsync queue, Maildir',
  'haraka-1': 'discards, no fsync',
  'haraka-2': 'discards, no fsync',
  'haraka-2-maildir': 'fsync, Maildir at 250',
  'moonpost-1': 'fsync, Maildir at 250',
  'moonpost-1-hooks': 'fsync, Maildir at 250',
  'moonpost-2': 'fsync, Maildir at 250',
  'moonpost-2-hooks': 'fsync, Maildir at 250',
  'moonpost-2-hooks-nofsync': 'Maildir at 250, no fsync',
};

/** Maildir-backed counting and the script-header check shared by moonpost and Postfix. */
function maildirParts(maildirNew: string, header: 'all' | 'none' | null): Pick<Server, 'count' | 'reset' | 'verify'> {
  return {
    count: () => countFiles(maildirNew),
    reset: async () => {
      await emptyDir(maildirNew);
      const left = await countFiles(maildirNew);
      if (left !== 0) throw new Error(`${left} files remain in ${maildirNew} after cleaning`);
    },
    verify: async () => {
      if (header === null) return null;
      const { files, withLine } = await countWithHeader(maildirNew, SCRIPT_HEADER);
      const want = header === 'all' ? files : 0;
      return withLine === want ? null : `${withLine} of ${files} delivered files carry "${SCRIPT_HEADER}", expected ${want}`;
    },
  };
}

async function startServer(ctx: BenchContext, id: ServerId, harakaBin: { bin: string; dir: string } | Error | null): Promise<Server> {
  const dir = join(ctx.root, `peer-${id}`);
  await mkdir(dir, { recursive: true });
  const base = { id, label: LABELS[id], stores: STORES[id] };
  if (id === 'sink') {
    const bin = await findBinary(SBIN('smtp-sink'));
    if (!bin) throw new Error('smtp-sink not found (it ships with Postfix)');
    const sink = await startSink(bin, await freePort());
    onCleanup('stop smtp-sink', () => void sink.stop());
    return { ...base, port: sink.port, roots: () => [sink.pid], count: async () => sink.received(), reset: async () => undefined, verify: async () => null, diagnose: () => null, stop: async () => void (await sink.stop()) };
  }
  if (id === 'postfix') {
    const postfix = await findBinary(SBIN('postfix'));
    const postconf = await findBinary(SBIN('postconf'));
    if (!postfix || !postconf) throw new Error('Postfix not installed (apt-get install -y --no-install-recommends postfix)');
    if (process.getuid?.() !== 0) throw new Error('a private Postfix instance must be started as root');
    const pf = await startPostfix({ postfix, postconf }, dir, await freePort(), ctx.domain, 'nobody');
    onCleanup('stop postfix', () => pf.stop());
    const masterPid = Number((await readFile(join(dir, 'spool', 'pid', 'master.pid'), 'utf8').catch(() => '0')).trim());
    return {
      ...base,
      port: pf.port,
      roots: () => (masterPid > 0 ? [masterPid] : []),
      ...maildirParts(pf.maildirNew, null),
      diagnose: () => `see ${join(dir, 'maillog')}`,
      stop: () => pf.stop(),
    };
  }
  if (id === 'haraka-1' || id === 'haraka-2' || id === 'haraka-2-maildir') {
    if (harakaBin === null) throw new Error('Haraka not selected');
    if (harakaBin instanceof Error) throw harakaBin;
    const maildir = id === 'haraka-2-maildir' ? join(dir, 'Maildir') : undefined;
    const h = await startHaraka(harakaBin.bin, harakaBin.dir, dir, await freePort(), ctx.domain, id === 'haraka-1' ? 0 : 2, maildir);
    onCleanup(`stop ${id}`, () => h.stop());
    return {
      ...base,
      port: h.port,
      roots: () => [h.pid],
      ...(maildir ? maildirParts(join(maildir, 'new'), null) : { count: () => h.accepted(), reset: async () => undefined, verify: async () => null }),
      diagnose: () => (h.alive() ? null : `Haraka exited:\n${h.tail()}`),
      stop: () => h.stop(),
    };
  }
  const m = MOONPOST[id];
  const mp = await startMoonpost(ctx.cli, dir, await freePort(), ctx.domain, {
    script: m.script ? ALL_HOOKS_LUA : undefined,
    workers: m.workers,
    extraConfig: m.noFsync ? ['queue: { fsync: false }'] : undefined,
  });
  onCleanup(`stop ${id}`, () => mp.stop());
  return {
    ...base,
    port: mp.port,
    roots: () => [mp.pid],
    ...maildirParts(mp.maildirNew, m.script ? 'all' : 'none'),
    diagnose: () => (mp.alive() ? null : `moonpost exited:\n${mp.tail()}`),
    stop: async () => {
      const left = await queueLeftovers(join(dir, 'var', 'queue'));
      await mp.stop();
      if (left > 0) throw new Error(`${id}: the queue still holds ${left} files after all runs`);
    },
  };
}

/** Polls `count() - base` until it reaches `want`; gives up when it has not moved for idleMs, or after maxMs. */
async function waitCount(count: () => Promise<number>, base: number, want: number, idleMs: number, maxMs: number): Promise<number> {
  const t0 = Date.now();
  let last = -1;
  let changed = t0;
  for (;;) {
    const n = (await count()) - base;
    const now = Date.now();
    if (n >= want) return n;
    if (n !== last) [last, changed] = [n, now];
    if (now - changed >= idleMs || now - t0 >= maxMs) return n;
    await sleep(50);
  }
}

interface RunResult {
  rate: number | null;
  result: ProbeResult | null;
  mem: { peakRssMb: number | null; peakPssMb: number | null };
  cpu: { msPerMsg: number; sysShare: number } | null;
  problem: string | null;
}

async function runOne(ctx: BenchContext, s: Server, sc: Omit<Scenario, 'id' | 'label'>, probe: boolean): Promise<RunResult> {
  const from = `bench@source.${ctx.domain}`;
  const to = `user@${ctx.domain}`;
  await s.reset();
  const base = await s.count();
  const win = startTreeWindow(() => s.roots());
  const cpu0 = treeCpu(s.roots());
  const p = probe ? startProbe({ port: s.port, bytes: sc.bytes, reuse: sc.reuse, from, to, helo: `probe.${ctx.domain}`, maxMessages: sc.messages, maxMs: 600_000 }) : null;
  const src = await runSource(ctx.source, { messages: sc.messages, sessions: sc.sessions, bytes: sc.bytes, reuse: sc.reuse, port: s.port, domain: ctx.domain });
  const result = p ? await p.stop() : null;
  const expected = sc.messages + (result?.accepted ?? 0);
  // Generous: stop waiting once nothing new has arrived for 15 s, or after 3 minutes in all.
  const got = await waitCount(() => s.count(), base, expected, 15_000, 180_000);
  const mem = win.end();
  const cpu1 = treeCpu(s.roots());
  const problems: string[] = [];
  if (src.timedOut) problems.push('smtp-source killed after timeout');
  else if (src.code !== 0) problems.push(`smtp-source exit ${src.code}: ${src.stderr.split('\n').slice(-3).join(' / ')}`);
  if (got !== expected) problems.push(`${got} of ${expected} messages accepted/delivered`);
  if (result && result.errors.length > 0) problems.push(`probe: ${result.errors.slice(0, 3).join(' / ')}`);
  const v = await s.verify();
  if (v) problems.push(v);
  if (problems.length > 0) {
    const d = s.diagnose();
    if (d) problems.push(d);
  }
  const ok = !src.timedOut && src.code === 0 && got === expected;
  const cpuMs = cpu1.userMs + cpu1.sysMs - cpu0.userMs - cpu0.sysMs;
  const cpu = ok && cpuMs > 0 ? { msPerMsg: cpuMs / expected, sysShare: (cpu1.sysMs - cpu0.sysMs) / cpuMs } : null;
  return { rate: ok ? (expected * 1000) / src.ms : null, result, mem, cpu, problem: problems.length > 0 ? problems.join('; ') : null };
}

/** Unmeasured messages each server gets before the first measured run. */
const WARMUP_MESSAGES = 4_000;

export async function runPeers(ctx: BenchContext, list: Scenario[]): Promise<PeerResults> {
  const { opts } = ctx;
  const ids = selectedServers(opts);
  let haraka: { bin: string; dir: string } | Error | null = null;
  if (ids.some((id) => id.startsWith('haraka'))) {
    const dir = harakaCacheDir(process.env);
    try {
      haraka = { bin: await ensureHaraka(dir), dir };
    } catch (err) {
      haraka = err as Error;
      log(`bench: Haraka unavailable: ${haraka.message}`);
    }
  }
  const running: Server[] = [];
  const missing: Missing[] = [];
  for (const id of ids) {
    try {
      const s = await startServer(ctx, id, haraka);
      running.push(s);
      log(`bench: ${s.label} on 127.0.0.1:${s.port}`);
    } catch (err) {
      const reason = err instanceof WorkersUnsupportedError ? 'n/a (workers not supported)' : `n/a (${(err as Error).message.split('\n')[0].slice(0, 120)})`;
      log(`bench: ${LABELS[id]}: ${reason}`);
      missing.push({ id, label: LABELS[id], stores: STORES[id], reason });
    }
  }

  const problems: string[] = [];
  if (opts.warmup) {
    for (const s of running) {
      // Long enough for each process's compilers to settle: a fresh moonpost spends a quarter of
      // its first second compiling, and about nothing after some 4,000 messages.
      const r = await runOne(ctx, s, { messages: WARMUP_MESSAGES, sessions: 20, bytes: 5120, reuse: false }, false);
      log(`bench: warm-up ${s.label}: ${fmt(r.rate)} msg/s${r.problem ? ` (${r.problem})` : ''}`);
    }
  }

  const trials: Trial[] = [];
  for (const sc of list) {
    for (let rep = 0; rep < opts.reps; rep++) {
      const order = rep % 2 === 0 ? running : [...running].reverse();
      for (const s of order) {
        const r = await runOne(ctx, s, sc, true);
        const samples = r.result?.samples ?? [];
        trials.push({ server: s.id, scenario: sc.id, rate: r.rate, samples, peakRssMb: r.mem.peakRssMb, peakPssMb: r.mem.peakPssMb, cpuMsPerMsg: r.cpu?.msPerMsg ?? null, sysShare: r.cpu?.sysShare ?? null, problem: r.problem });
        log(
          `bench: ${sc.id} rep ${rep + 1} ${s.label}: ${fmt(r.rate)} msg/s, end of DATA p50 ${fmt(percentile(samples, 50), 1)} ms p99 ${fmt(percentile(samples, 99), 1)} ms (${samples.length}), ` +
            `peak RSS ${fmt(r.mem.peakRssMb, 1)} MB (PSS ${fmt(r.mem.peakPssMb, 1)}), CPU ${fmt(r.cpu?.msPerMsg ?? null, 3)} ms/msg (${fmt(r.cpu ? r.cpu.sysShare * 100 : null)}% sys)`,
        );
        if (r.problem) {
          log(`bench:   PROBLEM: ${r.problem}`);
          problems.push(`${sc.id} rep ${rep + 1} ${s.label}: ${r.problem}`);
        }
      }
    }
  }
  for (const s of running) {
    try {
      await s.stop();
    } catch (err) {
      problems.push((err as Error).message);
    }
  }

  const rows: string[][] = [];
  const rateOf = (id: ServerId, sc: string): number | null => median(trials.filter((t) => t.server === id && t.scenario === sc && t.rate !== null).map((t) => t.rate as number));
  for (const sc of list) {
    const pf = rateOf('postfix', sc.id);
    for (const id of ids) {
      const miss = missing.find((m) => m.id === id);
      const label = LABELS[id];
      if (miss) {
        rows.push([`${sc.id}) ${sc.label}`, label, miss.reason, '', '', '', '', '', '', STORES[id]]);
        continue;
      }
      const ts = trials.filter((t) => t.server === id && t.scenario === sc.id);
      const rate = rateOf(id, sc.id);
      const samples = ts.flatMap((t) => t.samples);
      const peak = (k: 'peakRssMb' | 'peakPssMb'): number | null => {
        const xs = ts.map((t) => t[k]).filter((x): x is number => x !== null);
        return xs.length > 0 ? Math.max(...xs) : null;
      };
      const cpuMs = median(ts.map((t) => t.cpuMsPerMsg).filter((x): x is number => x !== null));
      const sys = median(ts.map((t) => t.sysShare).filter((x): x is number => x !== null));
      rows.push([
        `${sc.id}) ${sc.label}`,
        label,
        fmt(rate),
        rate !== null && pf !== null ? `${fmt(rate / pf, 2)}×` : 'n/a',
        fmt(percentile(samples, 50), 1),
        fmt(percentile(samples, 99), 1),
        String(samples.length),
        fmt(peak('peakRssMb'), 0),
        fmt(peak('peakPssMb'), 0),
        cpuMs === null ? 'n/a' : `${fmt(cpuMs, 2)} (${fmt((sys ?? 0) * 100)}%)`,
        STORES[id],
      ]);
    }
  }
  const header = ['scenario', 'server', 'msg/s', 'vs Postfix', 'p50 ms', 'p99 ms', 'probe n', 'peak RSS MB', 'peak PSS MB', 'CPU ms/msg (sys)', 'accepted mail'];
  const notes = [
    'msg/s: messages accepted per second while smtp-source ran (median of the repetitions; the probe\'s messages included).',
    'p50/p99 ms: end-of-DATA reply latency (final "." handed to the kernel until the 250) measured by one extra client',
    '  (bench/probe.ts) beside smtp-source\'s 20 connections, same message size and connection mode; "probe n" samples over all repetitions.',
    'peak RSS/PSS MB: highest sum over the server\'s processes (PSS splits shared pages, so it is the fairer sum for',
    '  multi-process servers: Postfix\'s smtpd/cleanup, Haraka\'s and moonpost\'s workers).',
    'CPU ms/msg (sys): CPU time of the server\'s processes (all threads, ended children included) from the start of',
    '  a run until its mail was counted, per accepted message (median of the repetitions), and the kernel\'s share of it.',
    '  The two cores are shared with smtp-source and the kernel\'s loopback work, so this is what each server costs, where',
    '  msg/s is what it reached beside them. A durable 250 costs kernel time: compare a moonpost row with its "no fsync" twin.',
    'Postfix acknowledges after an fsynced queue file, then delivers to a Maildir; moonpost acknowledges once the fsynced',
    '  message is in the Maildir (folder fsynced; mail it cannot deliver at once goes to its fsynced queue first); both counted. Haraka discards',
    '  without writing or fsyncing (counted by a plugin), or with "Maildir" stores each message as moonpost does before its 250',
    '  (bench/haraka.ts\'s bench_maildir plugin: written, fsynced, renamed into new/, new/ fsynced); smtp-sink discards (the ceiling of client and loopback for',
    '  5 KB; being single-threaded it is no ceiling for 1 MB). "no fsync": moonpost with queue.fsync false, the same writes without',
    '  the two flushes (file, then Maildir folder) its durable 250 waits for: the fair row beside Haraka\'s discarding ones.',
  ];
  return {
    section: {
      title: `Peers, median of ${opts.reps} (scale ${opts.scale}; 20 connections by smtp-source, all on loopback)`,
      table: renderTable(header, rows),
      notes,
      problems,
    },
    trials,
    labels: new Map(ids.map((id) => [id, LABELS[id]])),
  };
}

/**
 * How fast server `a` ran against server `b` in a scenario: the median over repetitions of the
 * ratio of their two runs in that repetition. The runs of one repetition follow each other, so
 * on a shared machine whose speed drifts between repetitions this compares like with like.
 */
export function pairedRatio(trials: Trial[], a: ServerId, b: ServerId, scenario: string): number | null {
  const runs = (id: ServerId): (number | null)[] => trials.filter((t) => t.server === id && t.scenario === scenario).map((t) => t.rate);
  const x = runs(a);
  const y = runs(b);
  const ratios: number[] = [];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const xi = x[i];
    const yi = y[i];
    if (xi !== null && yi !== null && yi > 0) ratios.push(xi / yi);
  }
  return median(ratios);
}

/** The median rate of a server in a scenario of the peer table. */
export function medianRate(trials: Trial[], id: ServerId, scenario: string): number | null {
  return median(trials.filter((t) => t.server === id && t.scenario === scenario && t.rate !== null).map((t) => t.rate as number));
}
