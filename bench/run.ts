/**
 * moonpost vs Postfix throughput benchmark (run with `npm run bench`).
 *
 * Starts a private Postfix (own config and queue under a temp folder, loopback only, `virtual` delivery
 * to a Maildir; needs root and the postfix package) and the built moonpost (dist/cli.js), then runs
 * Postfix's `smtp-source` against each, alternating, and prints median messages/second:
 *   a) 10,000 x 5 KB, 20 connections, a new connection per message
 *   b) 10,000 x 5 KB, 20 connections reused (-d: the 20 sessions share the -m total)
 *   c)  1,000 x 1 MB, 20 connections, a new connection per message
 * A run is timed from the start to the end of smtp-source (acceptance rate); afterwards the Maildir
 * must hold exactly the messages sent (waiting while they keep arriving). "e2e" rates include that wait.
 * Moonpost's peak RSS per scenario is the max of VmRSS sampled every 200 ms and VmHWM (reset per scenario).
 *
 * Options (environment variable, or flag after `npm run bench --`):
 *   BENCH_SCALE=0.1       --scale 0.1     multiply message counts (default 1; at least 20 messages)
 *   BENCH_REPS=1          --reps 1        repetitions per server and scenario (default 3; median reported)
 *   BENCH_ONLY=a,c        --only a,c      run only these scenarios
 *   BENCH_NO_POSTFIX=1    --no-postfix    benchmark moonpost alone
 *   BENCH_NO_WARMUP=1     --no-warmup     skip the unmeasured warm-up run per server
 *   BENCH_KEEP=1          --keep          keep the temp folder (configs, logs, Maildirs) for inspection
 * Quick check: `BENCH_SCALE=0.05 BENCH_REPS=1 npm run bench`.
 * Exit code 1 if any run failed or delivered a different number of messages than it sent.
 */
import { chmod, mkdtemp, mkdir, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanup, installSignalHandlers, onCleanup } from './cleanup.js';
import { startMoonpost } from './moonpost.js';
import { parseOptions, scenarios, type Scenario } from './options.js';
import { startPostfix, type PostfixInstance } from './postfix.js';
import { findBinary, freePort, sleep } from './proc.js';
import { killAllSources } from './smtp-source.js';
import { fmt, median, renderTable } from './table.js';
import { runTrial, type Target, type TrialResult } from './trial.js';

const DOMAIN = 'bench.test';
const SBIN = (name: string): string[] => [`/usr/sbin/${name}`, `/usr/bin/${name}`, `/usr/local/sbin/${name}`];
const log = (s: string): void => void process.stderr.write(`${s}\n`);

async function tryPostfix(root: string): Promise<PostfixInstance | null> {
  const postfix = await findBinary(SBIN('postfix'));
  const postconf = await findBinary(SBIN('postconf'));
  if (!postfix || !postconf) {
    log('bench: Postfix binaries (postfix, postconf) not found; running moonpost alone.');
    log('       Install with: apt-get install -y --no-install-recommends postfix (see /work/shared/notes/peers.md).');
    return null;
  }
  if (process.getuid?.() !== 0) {
    log('bench: a private Postfix instance must be started as root; running moonpost alone.');
    return null;
  }
  const dir = join(root, 'postfix');
  await mkdir(dir);
  try {
    const pf = await startPostfix({ postfix, postconf }, dir, await freePort(), DOMAIN, 'nobody');
    onCleanup('stop postfix', () => pf.stop());
    return pf;
  } catch (err) {
    log(`bench: could not start Postfix (${(err as Error).message}); running moonpost alone.`);
    return null;
  }
}

async function queueFiles(dir: string): Promise<number> {
  try {
    const entries = await readdir(dir, { recursive: true, withFileTypes: true });
    return entries.filter((e) => e.isFile()).length;
  } catch {
    return 0;
  }
}

/** Files left in moonpost's queue once it has had up to 10 s to finish removing delivered ones. */
async function queueLeftovers(dir: string): Promise<number> {
  let n = await queueFiles(dir);
  for (let i = 0; i < 50 && n > 0; i++) {
    await sleep(200);
    n = await queueFiles(dir);
  }
  return n;
}

function summarize(sc: Scenario, results: TrialResult[], servers: string[]): string[] {
  const rates = (s: string, k: 'rate' | 'e2eRate'): number | null =>
    median(results.filter((r) => r.server === s && r[k] !== null).map((r) => r[k] as number));
  const mp = rates('moonpost', 'rate');
  const pf = servers.includes('postfix') ? rates('postfix', 'rate') : null;
  const peak = Math.max(0, ...results.filter((r) => r.server === 'moonpost').map((r) => r.peakMb ?? 0));
  return [
    `${sc.id}) ${sc.label}`,
    fmt(mp),
    fmt(pf),
    mp !== null && pf !== null ? fmt(mp / pf, 2) : 'n/a',
    peak > 0 ? fmt(peak, 1) : 'n/a',
    fmt(rates('moonpost', 'e2eRate')),
    fmt(pf === null ? null : rates('postfix', 'e2eRate')),
  ];
}

async function main(): Promise<number> {
  installSignalHandlers();
  const opts = parseOptions(process.argv.slice(2), process.env);
  const source = await findBinary(SBIN('smtp-source'));
  if (!source) {
    log('bench: smtp-source not found (it ships with Postfix: apt-get install postfix); cannot benchmark.');
    return 1;
  }
  const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
  const root = await mkdtemp(join(tmpdir(), 'moonpost-bench-'));
  await chmod(root, 0o755); // Postfix's daemons and the mailbox owner must traverse it
  onCleanup('remove temp folder', async () => {
    if (opts.keep) log(`bench: kept ${root}`);
    else await rm(root, { recursive: true, force: true });
  });
  onCleanup('kill smtp-source', killAllSources);

  const pf = opts.postfix ? await tryPostfix(root) : null;
  const mpDir = join(root, 'moonpost');
  await mkdir(mpDir);
  const mp = await startMoonpost(cli, mpDir, await freePort(), DOMAIN);
  onCleanup('stop moonpost', () => mp.stop());

  const targets: Target[] = [
    { name: 'moonpost', port: mp.port, maildirNew: mp.maildirNew, pid: mp.pid, diagnose: () => (mp.alive() ? null : `moonpost exited:\n${mp.tail()}`) },
  ];
  if (pf) targets.push({ name: 'postfix', port: pf.port, maildirNew: pf.maildirNew, diagnose: () => `see ${join(pf.dir, 'maillog')}` });
  log(`bench: moonpost pid ${mp.pid} on 127.0.0.1:${mp.port}` + (pf ? `, postfix on 127.0.0.1:${pf.port}` : ''));
  log(`bench: scale ${opts.scale}, ${opts.reps} rep(s), temp folder ${root}`);

  const problems: string[] = [];
  if (opts.warmup) {
    for (const t of targets) {
      const r = await runTrial(source, { ...t, pid: undefined }, { messages: 500, sessions: 20, bytes: 5120, reuse: false, domain: DOMAIN });
      log(`bench: warm-up ${t.name}: ${fmt(r.rate)} msg/s${r.problem ? ` (${r.problem})` : ''}`);
    }
  }

  const rows: string[][] = [];
  for (const sc of scenarios(opts)) {
    const results: TrialResult[] = [];
    for (let rep = 0; rep < opts.reps; rep++) {
      const order = rep % 2 === 0 ? targets : [...targets].reverse();
      for (const t of order) {
        const r = await runTrial(source, t, { messages: sc.messages, sessions: sc.sessions, bytes: sc.bytes, reuse: sc.reuse, domain: DOMAIN });
        results.push(r);
        const mem = r.peakMb !== null ? `, peak RSS ${fmt(r.peakMb, 1)} MB` : '';
        log(`bench: ${sc.id} rep ${rep + 1} ${t.name}: ${fmt(r.rate)} msg/s, e2e ${fmt(r.e2eRate)} msg/s, ${r.delivered}/${sc.messages} delivered${mem}`);
        if (r.problem) {
          log(`bench:   PROBLEM: ${r.problem}`);
          problems.push(`${sc.id} rep ${rep + 1} ${t.name}: ${r.problem}`);
        }
      }
    }
    rows.push(summarize(sc, results, targets.map((t) => t.name)));
  }

  const left = await queueLeftovers(join(mpDir, 'var', 'queue'));
  if (left > 0) problems.push(`moonpost queue still holds ${left} files after all runs`);

  const header = ['scenario', 'moonpost msg/s', 'postfix msg/s', 'ratio mp/pf', 'moonpost peak RSS MB', 'mp e2e msg/s', 'pf e2e msg/s'];
  process.stdout.write(`\nMedian of ${opts.reps} (scale ${opts.scale}; msg/s = accepted, timed over smtp-source; e2e = until all in Maildir)\n`);
  process.stdout.write(renderTable(header, rows) + '\n');
  if (!pf) process.stdout.write('(Postfix not run)\n');
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
