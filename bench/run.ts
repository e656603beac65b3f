/**
 * moonpost benchmarks (run with `npm run bench`): one command, one run, one report.
 *
 * a-c: the peer table (peers.ts). moonpost (1 process and `workers: 2`, durable queue, without and
 *    with bench/all-hooks.lua) beside a private Postfix (own config and queue under a temp folder,
 *    Maildir delivery; needs root and the postfix package), Haraka (installed by the bench into
 *    ~/.cache/moonpost-bench/haraka; 1 process and nodes=2 discarding without fsync, and nodes=2 with a
 *    plugin storing each message durably in a Maildir before its 250) and smtp-sink (the
 *    ceiling), all on loopback, fed by Postfix's smtp-source over 20 connections:
 *      a) 10,000 x 5 KB, a new connection per message
 *      b) 10,000 x 5 KB, the 20 connections reused (-d: the sessions share the -m total)
 *      c)  1,000 x 1 MB, a new connection per message
 *    messages/second, end-of-DATA reply latency p50/p99 (probe.ts: one more client beside
 *    smtp-source, which reports no latency), peak memory of each server's process tree, ratio to
 *    Postfix. A moonpost row with `workers: 2` reads "n/a (workers not supported)" if moonpost
 *    refuses the key.
 * d: SMTPSVR.LUA throughput, read from the table: moonpost with all-hooks.lua against moonpost without
 *    a script, a and b; target: script >= 70% of no script. Alone (BENCH_ONLY=d) it runs a and b for
 *    those two servers.
 * e: memory per idle connection (idle-bench.ts): 2,000 idle connections, with and without the script;
 *    target under 100 KB with the script.
 * f: message analysis (attach-bench.ts): 1 MB with five attachments and a ProcessMessage reading the
 *    structure, against no script; targets: script >= 60% of no script, peak RSS under 250 MB.
 * g: relay (relay-bench.ts): 10,000 x 5 KB queued, then relayed to smtp-sink with relayout.lua
 *    (CheckFile reads the header), against Postfix relaying the same; target: moonpost >= Postfix.
 * h: 10,000 idle connections held at once (idle-bench.ts), all hooks, 1 process and workers: 2;
 *    target under 1 GB RSS.
 * Targets missed are printed ("NO") but do not change the exit code; failed or short runs do.
 *
 * Options (environment variable, or flag after `npm run bench --`):
 *   BENCH_SCALE=0.1       --scale 0.1     multiply message counts (default 1; at least 20 messages)
 *   BENCH_REPS=1          --reps 1        repetitions per server and scenario (default 3; median reported)
 *   BENCH_ONLY=a,c        --only a,c      run only these scenarios (a, b, c, d, e, f, g, h)
 *   BENCH_SERVERS=postfix,moonpost-1  --servers ...  rows of the peer table to run (default all:
 *                         sink, postfix, haraka-1, haraka-2, haraka-2-maildir, moonpost-1, moonpost-1-hooks, moonpost-2, moonpost-2-hooks,
 *                         moonpost-2-hooks-nofsync)
 *   BENCH_NO_POSTFIX=1    --no-postfix    no Postfix (peer table and relay)
 *   BENCH_NO_HARAKA=1     --no-haraka     no Haraka (and no install)
 *   BENCH_NO_WARMUP=1     --no-warmup     skip the unmeasured warm-up run per server
 *   BENCH_KEEP=1          --keep          keep the temp folder (configs, logs, Maildirs) for inspection
 *   BENCH_WRITE=1|0       --write 1|0     write bench/RESULTS.md and the README's table (default: only
 *                                         after a full default run)
 *   BENCH_CACHE=DIR                       where Haraka is installed (default ~/.cache/moonpost-bench)
 * Quick check: `BENCH_SCALE=0.05 BENCH_REPS=1 npm run bench`; scripting only: `BENCH_ONLY=d,e npm run bench`.
 * Exit code 1 if any run failed or delivered a different number of messages than it sent.
 */
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runAttachScenario } from './attach-bench.js';
import { describeDisk, spreadSubfolders } from './disk.js';
import { cleanup, installSignalHandlers, onCleanup } from './cleanup.js';
import { HARAKA_VERSION } from './haraka.js';
import { runIdleScenario, runManyIdleScenario } from './idle-bench.js';
import { isFullRun, parseOptions, scenarios, wants, type Options } from './options.js';
import { medianRate, pairedRatio, runPeers, type BenchContext, type Trial } from './peers.js';
import { findBinary, run } from './proc.js';
import { runRelayScenario } from './relay-bench.js';
import { killAllSources } from './smtp-source.js';
import { fmt, renderTable, type Section } from './table.js';

const DOMAIN = 'bench.test';
const SBIN = (name: string): string[] => [`/usr/sbin/${name}`, `/usr/bin/${name}`, `/usr/local/sbin/${name}`];
const log = (s: string): void => void process.stderr.write(`${s}\n`);
const RESULTS = fileURLToPath(new URL('./RESULTS.md', import.meta.url));
const README = fileURLToPath(new URL('../README.md', import.meta.url));
const MARK_START = '<!-- bench-results:start (written by npm run bench) -->';
const MARK_END = '<!-- bench-results:end -->';
/** A 1-minute load average above this before the run means others were using the CPU. */
const QUIET_LOAD = 0.5;

/** Section d: all-hooks.lua against no script, from the peer table's 1-process moonpost rows. */
function scriptSection(trials: Trial[], opts: Options): Section {
  const rows: string[][] = [];
  for (const [sc, label] of [
    ['a', '5 KB, 20 conns, new conn/msg'],
    ['b', '5 KB, 20 conns, reused'],
  ]) {
    const a = medianRate(trials, 'moonpost-1', sc);
    const b = medianRate(trials, 'moonpost-1-hooks', sc);
    const ratio = pairedRatio(trials, 'moonpost-1-hooks', 'moonpost-1', sc);
    rows.push([`d) ${label}`, fmt(a), fmt(b), ratio === null ? 'n/a' : `${fmt(ratio * 100)}%`, ratio === null ? 'n/a' : ratio >= 0.7 ? 'yes' : 'NO']);
  }
  return {
    title: `Scripting, median of ${opts.reps} (the peer table's 1-process moonpost rows; bench/all-hooks.lua defines every hook, MessageLine matches every line)`,
    table: renderTable(['SMTPSVR.LUA throughput', 'no script msg/s', 'all hooks msg/s', 'script/no script', '>= 70%?'], rows),
    notes: [
      'script/no script: the median over repetitions of the ratio of the two runs of one repetition (they run one after the other), not the ratio of the two medians.',
      'Every scripted delivery was checked for the "X-Bench-Script: all-hooks" header added by DoDATAStart (and no unscripted one).',
    ],
    problems: [],
  };
}

/** The peer-table targets of issues 2 and 8, measured against what ran. */
function targetsSection(trials: Trial[]): Section {
  const rows: string[][] = [];
  const ran = (sc: string): boolean => trials.some((t) => t.scenario === sc);
  const cmp = (what: string, sc: string, a: string, b: string, factor: number): void => {
    if (!ran(sc)) return;
    const r = pairedRatio(trials, a as Trial['server'], b as Trial['server'], sc);
    rows.push([what, r === null ? 'n/a' : `${fmt(r, 2)}×`, r === null ? 'n/a' : r >= factor ? 'yes' : 'NO']);
  };
  for (const sc of ['a', 'b']) {
    cmp(`${sc}) workers: 2 + all hooks >= 1.5× Postfix`, sc, 'moonpost-2-hooks', 'postfix', 1.5);
    cmp(`${sc}) workers: 2 + all hooks >= Haraka nodes=2`, sc, 'moonpost-2-hooks', 'haraka-2', 1);
    cmp(`${sc}) the same against Haraka nodes=2 + Maildir (both durable)`, sc, 'moonpost-2-hooks', 'haraka-2-maildir', 1);
    cmp(`${sc}) the same without fsync against Haraka nodes=2 (neither durable)`, sc, 'moonpost-2-hooks-nofsync', 'haraka-2', 1);
    cmp(`${sc}) 1 process, no script >= Postfix`, sc, 'moonpost-1', 'postfix', 1);
  }
  cmp('c) workers: 2 + all hooks >= Postfix', 'c', 'moonpost-2-hooks', 'postfix', 1);
  for (const sc of ['a', 'b']) {
    if (!ran(sc)) continue;
    const peaks = trials.filter((t) => t.server === 'moonpost-1' && t.scenario === sc && t.peakRssMb !== null).map((t) => t.peakRssMb as number);
    const p = peaks.length > 0 ? Math.max(...peaks) : null;
    rows.push([`${sc}) 1 process, no script: peak RSS < 150 MB`, p === null ? 'n/a' : `${fmt(p, 0)} MB`, p === null ? 'n/a' : p < 150 ? 'yes' : 'NO']);
  }
  return {
    title: 'Targets (issues 2 and 8; n/a where a server did not run)',
    table: renderTable(['target', 'measured', 'met?'], rows),
    notes: ['Each ratio is the median over repetitions of the ratio of the two servers\' runs in one repetition.'],
    problems: [],
  };
}

async function machine(root: string, spread: boolean): Promise<string[]> {
  const cpu = cpus();
  const kernel = (await run('uname', ['-sr'])).stdout.trim();
  const pfv = (await run('/usr/sbin/postconf', ['-dh', 'mail_version'])).stdout.trim();
  return [
    `${cpu.length} × ${cpu[0]?.model ?? 'unknown CPU'}, ${fmt(totalmem() / 2 ** 30, 1)} GB RAM, ${kernel}`,
    `Node ${process.version}, Postfix ${pfv || 'n/a'}, Haraka ${HARAKA_VERSION}; all servers, load generators and the probe on the same cores, loopback only`,
    await describeDisk(root, spread),
  ];
}

function markdown(sections: Section[], info: string[], conditions: string, cmd: string): string {
  const out = [`Generated by \`${cmd}\` on ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC.`, '', ...info.map((l) => `- ${l}`), `- ${conditions}`, ''];
  for (const s of sections) {
    out.push(`**${s.title}**`, '', s.table, '');
    // A note's continuation lines start with two spaces.
    const paras: string[] = [];
    for (const n of s.notes) {
      if (n.startsWith('  ') && paras.length > 0) paras[paras.length - 1] += ` ${n.trim()}`;
      else paras.push(n);
    }
    if (paras.length > 0) out.push(...paras.map((p) => `- ${p}`), '');
  }
  return out.join('\n');
}

async function writeOutputs(md: string): Promise<void> {
  await writeFile(RESULTS, `# moonpost benchmark results\n\n${md}`);
  const readme = await readFile(README, 'utf8');
  const i = readme.indexOf(MARK_START);
  const j = readme.indexOf(MARK_END);
  if (i < 0 || j < i) {
    log(`bench: README has no ${MARK_START} ... ${MARK_END} block; wrote ${RESULTS} only`);
    return;
  }
  await writeFile(README, readme.slice(0, i + MARK_START.length) + '\n' + md + '\n' + readme.slice(j));
  log(`bench: wrote ${RESULTS} and the README's benchmark table`);
}

/** The longest a full run waits for the machine to settle before it starts. */
const SETTLE_MAX_MS = 180_000;

/**
 * Waits, at most SETTLE_MAX_MS, for the 1-minute load average to fall under QUIET_LOAD: work
 * that just ended (a build, the tests) keeps it high for minutes after. Returns it then.
 */
async function settle(): Promise<number[]> {
  const t0 = Date.now();
  if (loadavg()[0] > QUIET_LOAD) log(`bench: waiting up to ${SETTLE_MAX_MS / 1000} s for a 1-minute load average under ${QUIET_LOAD} (now ${loadavg()[0].toFixed(2)})`);
  while (loadavg()[0] > QUIET_LOAD && Date.now() - t0 < SETTLE_MAX_MS) await new Promise((resolve) => setTimeout(resolve, 5_000));
  return loadavg();
}

async function main(): Promise<number> {
  installSignalHandlers();
  const opts = parseOptions(process.argv.slice(2), process.env);
  const loadBefore = isFullRun(opts) ? await settle() : loadavg();
  const source = await findBinary(SBIN('smtp-source'));
  if (!source) {
    log('bench: smtp-source not found (it ships with Postfix: apt-get install postfix); cannot benchmark.');
    return 1;
  }
  const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
  const root = await mkdtemp(join(tmpdir(), 'moonpost-bench-'));
  await chmod(root, 0o755); // Postfix's daemons and the mailbox owner must traverse it
  const spread = await spreadSubfolders(root);
  onCleanup('remove temp folder', async () => {
    if (opts.keep) log(`bench: kept ${root}`);
    else await rm(root, { recursive: true, force: true });
  });
  onCleanup('kill smtp-source', killAllSources);
  log(`bench: scale ${opts.scale}, ${opts.reps} rep(s), temp folder ${root}, load average ${loadBefore.map((x) => x.toFixed(2)).join(' ')}`);

  const ctx: BenchContext = { opts, source, cli, root, domain: DOMAIN };
  const sections: Section[] = [];
  const list = scenarios(opts);
  if (list.length > 0) {
    const peers = await runPeers(ctx, list);
    if (['a', 'b', 'c'].some((id) => wants(opts, id))) sections.push(peers.section, targetsSection(peers.trials));
    else sections.push({ ...peers.section, table: '', title: '', notes: [] });
    if (wants(opts, 'd')) sections.push(scriptSection(peers.trials, opts));
  }
  if (wants(opts, 'e')) sections.push(await runIdleScenario(ctx));
  if (wants(opts, 'h')) sections.push(await runManyIdleScenario(ctx));
  if (wants(opts, 'f')) sections.push(await runAttachScenario(ctx));
  if (wants(opts, 'g')) sections.push(await runRelayScenario(ctx));

  const shown = sections.filter((s) => s.title !== '');
  const loadAfter = loadavg();
  const noisy = loadBefore[0] > QUIET_LOAD;
  const conditions = noisy
    ? `NOISY: measured while other work used the CPU (1-minute load average ${loadBefore[0].toFixed(2)} before the run, ${loadAfter[0].toFixed(2)} at the end); to be re-measured on a quiet machine`
    : `Quiet machine (1-minute load average ${loadBefore[0].toFixed(2)} before the run, ${loadAfter[0].toFixed(2)} at the end, the benchmark's own load included)`;
  const cmd = isFullRun(opts) && opts.reps === 3 ? 'npm run bench' : `npm run bench (${[opts.only ? `BENCH_ONLY=${[...opts.only].join(',')}` : '', opts.servers ? `BENCH_SERVERS=${[...opts.servers].join(',')}` : '', opts.scale !== 1 ? `BENCH_SCALE=${opts.scale}` : '', opts.reps !== 3 ? `BENCH_REPS=${opts.reps}` : ''].filter(Boolean).join(' ')})`;
  const md = markdown(shown, await machine(root, spread), conditions, cmd);
  process.stdout.write(`\n${md}\n`);
  if (opts.write === true || (opts.write === null && isFullRun(opts))) await writeOutputs(md);
  const problems = sections.flatMap((s) => s.problems);
  if (problems.length > 0) process.stdout.write(`\nProblems:\n${problems.map((p) => `- ${p}`).join('\n')}\n`);
  return problems.length > 0 ? 1 : 0;
}

let code = 1;
try {
  code = await main();
} catch (err) {
  log(`bench: ${(err as Error).stack ?? String(err)}`);
} finally {
  await cleanup();
}
process.exit(code);
