/**
 * Scenarios a-c: moonpost (no script) against a private Postfix, both fed by smtp-source,
 * alternating per repetition; medians of accepted and end-to-end messages/second.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { onCleanup } from './cleanup.js';
import { startMoonpost } from './moonpost.js';
import type { Options, Scenario } from './options.js';
import { startPostfix, type PostfixInstance } from './postfix.js';
import { findBinary, freePort } from './proc.js';
import { queueLeftovers } from './queue.js';
import { fmt, median, renderTable, type Section } from './table.js';
import { runTrial, type Target, type TrialResult } from './trial.js';

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

async function tryPostfix(root: string, domain: string): Promise<PostfixInstance | null> {
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
    const pf = await startPostfix({ postfix, postconf }, dir, await freePort(), domain, 'nobody');
    onCleanup('stop postfix', () => pf.stop());
    return pf;
  } catch (err) {
    log(`bench: could not start Postfix (${(err as Error).message}); running moonpost alone.`);
    return null;
  }
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

export async function runComparison(ctx: BenchContext, list: Scenario[]): Promise<Section> {
  const { opts, source, domain } = ctx;
  const pf = opts.postfix ? await tryPostfix(ctx.root, domain) : null;
  const mpDir = join(ctx.root, 'moonpost');
  await mkdir(mpDir);
  const mp = await startMoonpost(ctx.cli, mpDir, await freePort(), domain);
  onCleanup('stop moonpost', () => mp.stop());

  const targets: Target[] = [
    { name: 'moonpost', port: mp.port, maildirNew: mp.maildirNew, pid: mp.pid, diagnose: () => (mp.alive() ? null : `moonpost exited:\n${mp.tail()}`) },
  ];
  if (pf) targets.push({ name: 'postfix', port: pf.port, maildirNew: pf.maildirNew, diagnose: () => `see ${join(pf.dir, 'maillog')}` });
  log(`bench: moonpost pid ${mp.pid} on 127.0.0.1:${mp.port}` + (pf ? `, postfix on 127.0.0.1:${pf.port}` : ''));

  const problems: string[] = [];
  if (opts.warmup) {
    for (const t of targets) {
      const r = await runTrial(source, { ...t, pid: undefined }, { messages: 500, sessions: 20, bytes: 5120, reuse: false, domain });
      log(`bench: warm-up ${t.name}: ${fmt(r.rate)} msg/s${r.problem ? ` (${r.problem})` : ''}`);
    }
  }

  const rows: string[][] = [];
  for (const sc of list) {
    const results: TrialResult[] = [];
    for (let rep = 0; rep < opts.reps; rep++) {
      const order = rep % 2 === 0 ? targets : [...targets].reverse();
      for (const t of order) {
        const r = await runTrial(source, t, { messages: sc.messages, sessions: sc.sessions, bytes: sc.bytes, reuse: sc.reuse, domain });
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
  await mp.stop();
  await pf?.stop();

  const header = ['scenario', 'moonpost msg/s', 'postfix msg/s', 'ratio mp/pf', 'moonpost peak RSS MB', 'mp e2e msg/s', 'pf e2e msg/s'];
  return {
    title: `Median of ${opts.reps} (scale ${opts.scale}; msg/s = accepted, timed over smtp-source; e2e = until all in Maildir)`,
    table: renderTable(header, rows),
    notes: pf ? [] : ['(Postfix not run)'],
    problems,
  };
}
