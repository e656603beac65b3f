/**
 * Scenario d: throughput with SMTPSVR.LUA. Two moonpost instances in the same run, one without a
 * script and one with bench/all-hooks.lua (every hook of the issue, MessageLine matching each line),
 * fed 10,000 x 5 KB by smtp-source over 20 connections, once with a new connection per message
 * (a new Lua state per message) and once with the 20 connections reused; alternating per repetition,
 * medians. Target: the script keeps at least 70% of the no-script rate.
 * Every run must deliver exactly what was sent; with the script every delivered message must carry
 * the header DoDATAStart adds, without it none may.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { onCleanup } from './cleanup.js';
import type { BenchContext } from './compare.js';
import { countWithHeader } from './header-check.js';
import { startMoonpost, type MoonpostInstance } from './moonpost.js';
import { SCRIPT_MESSAGES, scaled } from './options.js';
import { freePort } from './proc.js';
import { queueLeftovers } from './queue.js';
import { fmt, median, renderTable, type Section } from './table.js';
import { runTrial, type Target, type TrialResult } from './trial.js';

export const ALL_HOOKS_LUA = fileURLToPath(new URL('./all-hooks.lua', import.meta.url));
/** The header line all-hooks.lua's DoDATAStart adds. */
const SCRIPT_HEADER = 'X-Bench-Script: all-hooks';
const TARGET_RATIO = 0.7;
const PLAIN = 'no script';
const SCRIPTED = 'all hooks';

const MODES = [
  { label: '5 KB, 20 conns, new conn/msg', reuse: false },
  { label: '5 KB, 20 conns, reused', reuse: true },
];

const log = (s: string): void => void process.stderr.write(`${s}\n`);

async function instance(ctx: BenchContext, name: string, script?: string): Promise<{ mp: MoonpostInstance; dir: string; target: Target }> {
  const dir = join(ctx.root, name);
  await mkdir(dir);
  const mp = await startMoonpost(ctx.cli, dir, await freePort(), ctx.domain, { script });
  onCleanup(`stop ${name}`, () => mp.stop());
  const label = script ? SCRIPTED : PLAIN;
  log(`bench: d) moonpost "${label}" pid ${mp.pid} on 127.0.0.1:${mp.port}`);
  const target: Target = {
    name: label,
    port: mp.port,
    maildirNew: mp.maildirNew,
    pid: mp.pid,
    diagnose: () => (mp.alive() ? null : `moonpost (${label}) exited:\n${mp.tail()}`),
  };
  return { mp, dir, target };
}

/** With the script all delivered messages carry its header; without it none does. */
async function headerProblem(t: Target, delivered: number): Promise<string | null> {
  const { files, withLine } = await countWithHeader(t.maildirNew, SCRIPT_HEADER);
  const want = t.name === SCRIPTED ? files : 0;
  if (withLine === want) return null;
  return `${withLine} of ${files} delivered files (${delivered} counted) carry "${SCRIPT_HEADER}", expected ${want}`;
}

export async function runScriptScenario(ctx: BenchContext): Promise<Section> {
  const { opts, source, domain } = ctx;
  const plain = await instance(ctx, 'moonpost-plain');
  const scripted = await instance(ctx, 'moonpost-script', ALL_HOOKS_LUA);
  const targets = [plain.target, scripted.target];
  const problems: string[] = [];
  const messages = scaled(opts, SCRIPT_MESSAGES, 20);

  if (opts.warmup) {
    for (const t of targets) {
      const r = await runTrial(source, { ...t, pid: undefined }, { messages: 500, sessions: 20, bytes: 5120, reuse: false, domain });
      log(`bench: d) warm-up ${t.name}: ${fmt(r.rate)} msg/s${r.problem ? ` (${r.problem})` : ''}`);
    }
  }

  const rows: string[][] = [];
  for (const mode of MODES) {
    const results: TrialResult[] = [];
    for (let rep = 0; rep < opts.reps; rep++) {
      const order = rep % 2 === 0 ? targets : [...targets].reverse();
      for (const t of order) {
        const r = await runTrial(source, t, { messages, sessions: 20, bytes: 5120, reuse: mode.reuse, domain });
        const hp = await headerProblem(t, r.delivered);
        const problem = [r.problem, hp].filter(Boolean).join('; ') || null;
        results.push({ ...r, problem });
        log(`bench: d) ${mode.label} rep ${rep + 1} ${t.name}: ${fmt(r.rate)} msg/s, e2e ${fmt(r.e2eRate)} msg/s, ${r.delivered}/${messages} delivered, peak RSS ${fmt(r.peakMb, 1)} MB`);
        if (problem) {
          log(`bench:   PROBLEM: ${problem}`);
          problems.push(`d ${mode.label} rep ${rep + 1} ${t.name}: ${problem}`);
        }
      }
    }
    const rate = (name: string): number | null => median(results.filter((r) => r.server === name && r.rate !== null).map((r) => r.rate as number));
    const peak = (name: string): number | null => {
      const p = results.filter((r) => r.server === name && r.peakMb !== null).map((r) => r.peakMb as number);
      return p.length > 0 ? Math.max(...p) : null;
    };
    const a = rate(PLAIN);
    const b = rate(SCRIPTED);
    const ratio = a !== null && b !== null ? b / a : null;
    const verdict = ratio === null ? 'n/a' : ratio >= TARGET_RATIO ? 'yes' : 'NO';
    rows.push([`d) ${mode.label}`, fmt(a), fmt(b), ratio === null ? 'n/a' : `${fmt(ratio * 100)}%`, verdict, fmt(peak(PLAIN), 1), fmt(peak(SCRIPTED), 1)]);
  }

  for (const x of [plain, scripted]) {
    const left = await queueLeftovers(join(x.dir, 'var', 'queue'));
    if (left > 0) problems.push(`d) ${x.target.name}: moonpost queue still holds ${left} files after all runs`);
    await x.mp.stop();
  }

  const header = ['SMTPSVR.LUA throughput', 'no script msg/s', 'all hooks msg/s', 'script/no script', `>= ${TARGET_RATIO * 100}%?`, 'peak RSS MB (none)', 'peak RSS MB (script)'];
  return {
    title: `Scripting, median of ${opts.reps} (${messages} x 5 KB per run; bench/all-hooks.lua defines every hook, MessageLine matches every line)`,
    table: renderTable(header, rows),
    notes: [`Every scripted delivery was checked for the "${SCRIPT_HEADER}" header added by DoDATAStart.`],
    problems,
  };
}
