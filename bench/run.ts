/**
 * moonpost benchmarks (run with `npm run bench`).
 *
 * a-c: moonpost vs Postfix throughput. Starts a private Postfix (own config and queue under a temp
 * folder, loopback only, `virtual` delivery to a Maildir; needs root and the postfix package) and the
 * built moonpost (dist/cli.js), then runs Postfix's `smtp-source` against each, alternating, and prints
 * median messages/second:
 *   a) 10,000 x 5 KB, 20 connections, a new connection per message
 *   b) 10,000 x 5 KB, 20 connections reused (-d: the 20 sessions share the -m total)
 *   c)  1,000 x 1 MB, 20 connections, a new connection per message
 * A run is timed from the start to the end of smtp-source (acceptance rate); afterwards the Maildir
 * must hold exactly the messages sent (waiting while they keep arriving). "e2e" rates include that wait.
 * Moonpost's peak RSS per scenario is the max of VmRSS sampled every 200 ms and VmHWM (reset per scenario).
 *
 * d: SMTPSVR.LUA throughput (script-bench.ts): moonpost without a script against moonpost running
 *    bench/all-hooks.lua (every hook, MessageLine matching each line), 10,000 x 5 KB over 20
 *    connections, new connection per message and reused; target: script >= 70% of no script.
 * e: memory per idle connection (idle-bench.ts): VmRSS growth of moonpost with 2,000 idle
 *    connections held open, with and without the script; target: under 100 KB with the script.
 *    The connections are held by a child process whose open-files limit is raised (fd-limit.ts).
 * f: message analysis (attach-bench.ts): 300 x 1 MB multipart/mixed with five base64 attachments, sent by
 *    bench/mime-load.ts over 20 reused connections (pipelined MAIL/RCPT/DATA), to moonpost without a
 *    script and with bench/structure.lua (ProcessMessage walks structure and attachments); targets:
 *    script >= 60% of no script, peak RSS under 250 MB.
 * g: relay (relay-bench.ts): 10,000 x 5 KB queued first, then relayed to Postfix's smtp-sink, moonpost
 *    (bench/relayout.lua, CheckFile reads the header) against Postfix (defer_transports, then
 *    postqueue -f) in the same run; target: moonpost >= Postfix.
 * Targets missed are printed ("NO") but do not change the exit code; failed or short deliveries do.
 *
 * Options (environment variable, or flag after `npm run bench --`):
 *   BENCH_SCALE=0.1       --scale 0.1     multiply message counts (default 1; at least 20 messages)
 *   BENCH_REPS=1          --reps 1        repetitions per server and scenario (default 3; median reported)
 *   BENCH_ONLY=a,c        --only a,c      run only these scenarios (a, b, c, d, e, f, g)
 *   BENCH_NO_POSTFIX=1    --no-postfix    benchmark moonpost alone
 *   BENCH_NO_WARMUP=1     --no-warmup     skip the unmeasured warm-up run per server
 *   BENCH_KEEP=1          --keep          keep the temp folder (configs, logs, Maildirs) for inspection
 * Quick check: `BENCH_SCALE=0.05 BENCH_REPS=1 npm run bench`; scripting only: `BENCH_ONLY=d,e npm run bench`.
 * Exit code 1 if any run failed or delivered a different number of messages than it sent.
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanup, installSignalHandlers, onCleanup } from './cleanup.js';
import { runComparison, type BenchContext } from './compare.js';
import { runIdleScenario } from './idle-bench.js';
import { runAttachScenario } from './attach-bench.js';
import { runRelayScenario } from './relay-bench.js';
import { parseOptions, scenarios, wants } from './options.js';
import { findBinary } from './proc.js';
import { runScriptScenario } from './script-bench.js';
import { killAllSources } from './smtp-source.js';
import { printSection, type Section } from './table.js';

const DOMAIN = 'bench.test';
const SBIN = (name: string): string[] => [`/usr/sbin/${name}`, `/usr/bin/${name}`, `/usr/local/sbin/${name}`];
const log = (s: string): void => void process.stderr.write(`${s}\n`);

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
  log(`bench: scale ${opts.scale}, ${opts.reps} rep(s), temp folder ${root}`);

  const ctx: BenchContext = { opts, source, cli, root, domain: DOMAIN };
  const sections: Section[] = [];
  const compared = scenarios(opts);
  if (compared.length > 0) sections.push(await runComparison(ctx, compared));
  if (wants(opts, 'd')) sections.push(await runScriptScenario(ctx));
  if (wants(opts, 'e')) sections.push(await runIdleScenario(ctx));
  if (wants(opts, 'f')) sections.push(await runAttachScenario(ctx));
  if (wants(opts, 'g')) sections.push(await runRelayScenario(ctx));

  for (const s of sections) printSection(s);
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
