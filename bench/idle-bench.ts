/**
 * Scenario e: memory per idle connection. A fresh moonpost (limits 5,000 connections, 5,000 per IP),
 * once with bench/all-hooks.lua and once without a script, per repetition: warm up with 100
 * connections, take VmRSS, open 2,000 connections from a child process (bench/idle-holder.ts; the
 * client sockets live there, not in moonpost) that each read the greeting (so Start() ran and the
 * session's Lua state exists), wait for things to settle, take VmRSS again, close them.
 * KB per idle connection = (after - before) / connections held. Target: under 100 KB with the script.
 * RSS after closing is shown too: WebAssembly memory never shrinks, so the Lua heap stays resident.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { onCleanup } from './cleanup.js';
import type { BenchContext } from './compare.js';
import { fdSoftLimit } from './fd-limit.js';
import { startHolder, type OpenReport } from './holder-client.js';
import { startMoonpost } from './moonpost.js';
import { IDLE_CONNECTIONS } from './options.js';
import { freePort, sleep } from './proc.js';
import { rssKb } from './rss.js';
import { ALL_HOOKS_LUA } from './script-bench.js';
import { fmt, median, renderTable, type Section } from './table.js';

const LIMITS = '{ connections: 5000, connectionsPerIp: 5000, messageSize: 52428800 }';
/** all-hooks.lua's Start() greeting ends with this. */
const MARKER = '(scripted)';
const WARMUP_CONNECTIONS = 100;
const SETTLE_MS = 3000;
const TARGET_KB = 100;

const log = (s: string): void => void process.stderr.write(`${s}\n`);

interface IdleSample {
  beforeKb: number;
  afterKb: number;
  closedKb: number;
  held: number;
}

/** Median of a few VmRSS readings 200 ms apart (kB), or null. */
async function steadyRss(pid: number): Promise<number | null> {
  const xs: number[] = [];
  for (let i = 0; i < 5; i++) {
    const v = rssKb(pid);
    if (v !== null) xs.push(v);
    await sleep(200);
  }
  return median(xs);
}

/** Opens `count` connections in the holder, runs `during` while they are held, then closes them. */
async function hold<T>(port: number, count: number, marker: string, during: () => Promise<T>): Promise<{ r: OpenReport; value: T; closedEarly: number | null }> {
  const h = startHolder(port, count, marker);
  onCleanup('kill connection holder', () => h.kill());
  try {
    const r = await h.opened(120_000);
    const value = await during();
    const closedEarly = await h.close();
    return { r, value, closedEarly };
  } finally {
    h.kill();
  }
}

async function measureOnce(ctx: BenchContext, dir: string, script: string | undefined): Promise<IdleSample> {
  await mkdir(dir);
  const mp = await startMoonpost(ctx.cli, dir, await freePort(), ctx.domain, { limits: LIMITS, script, fdLimit: IDLE_CONNECTIONS + 1024 });
  onCleanup('stop moonpost (idle)', () => mp.stop());
  try {
    const limit = fdSoftLimit(mp.pid);
    if (limit !== null && limit < IDLE_CONNECTIONS + 64) throw new Error(`moonpost's open-files limit is ${limit}, too low for ${IDLE_CONNECTIONS} connections (raised as far as the hard limit allows; raise that with \`ulimit -Hn\` as root)`);
    const marker = script ? MARKER : '';
    await hold(mp.port, WARMUP_CONNECTIONS, marker, async () => undefined);
    await sleep(SETTLE_MS);
    const before = await steadyRss(mp.pid);
    const { r, value: after, closedEarly } = await hold(mp.port, IDLE_CONNECTIONS, marker, async () => {
      await sleep(SETTLE_MS);
      return steadyRss(mp.pid);
    });
    const issues: string[] = [];
    if (r.opened !== IDLE_CONNECTIONS) issues.push(`${r.opened} of ${IDLE_CONNECTIONS} connections greeted (${r.errors.join('; ')})`);
    if (closedEarly !== 0) issues.push(`moonpost closed ${closedEarly ?? 'an unknown number of'} connections while they were held`);
    if (script && r.marked !== r.opened) issues.push(`${r.marked} of ${r.opened} greetings came from the script's Start()`);
    if (!mp.alive()) issues.push(`moonpost exited:\n${mp.tail()}`);
    if (issues.length > 0) throw new Error(issues.join('; '));
    await sleep(SETTLE_MS);
    const closed = await steadyRss(mp.pid);
    if (before === null || after === null || closed === null) throw new Error(`cannot read /proc/${mp.pid}/status`);
    log(`bench: e) ${script ? 'all hooks' : 'no script'}: held ${r.opened} (opened in ${r.ms} ms), VmRSS ${fmt(before / 1024, 1)} -> ${fmt(after / 1024, 1)} MB, ${fmt(closed / 1024, 1)} MB after closing`);
    return { beforeKb: before, afterKb: after, closedKb: closed, held: r.opened };
  } finally {
    await mp.stop();
  }
}

export async function runIdleScenario(ctx: BenchContext): Promise<Section> {
  const variants = [
    { label: 'no script', script: undefined },
    { label: 'all hooks', script: ALL_HOOKS_LUA },
  ];
  const problems: string[] = [];
  const samples = new Map<string, IdleSample[]>(variants.map((v) => [v.label, []]));
  for (let rep = 0; rep < ctx.opts.reps; rep++) {
    const order = rep % 2 === 0 ? variants : [...variants].reverse();
    for (const v of order) {
      try {
        samples.get(v.label)!.push(await measureOnce(ctx, join(ctx.root, `idle-${rep + 1}-${v.label.replace(' ', '-')}`), v.script));
      } catch (err) {
        log(`bench:   PROBLEM: e) ${v.label} rep ${rep + 1}: ${(err as Error).message}`);
        problems.push(`e ${v.label} rep ${rep + 1}: ${(err as Error).message}`);
      }
    }
  }
  const perConn = (label: string): number | null => median(samples.get(label)!.map((s) => (s.afterKb - s.beforeKb) / s.held));
  const mb = (label: string, k: keyof IdleSample): number | null => {
    const m = median(samples.get(label)!.map((s) => s[k]));
    return m === null ? null : m / 1024;
  };
  const rows = variants.map((v) => {
    const kb = perConn(v.label);
    const verdict = v.script === undefined || kb === null ? '' : kb < TARGET_KB ? 'yes' : 'NO';
    return [`e) ${v.label}`, fmt(mb(v.label, 'beforeKb'), 1), fmt(mb(v.label, 'afterKb'), 1), fmt(mb(v.label, 'closedKb'), 1), fmt(kb, 1), verdict];
  });
  const plain = perConn('no script');
  const scripted = perConn('all hooks');
  const header = [`${IDLE_CONNECTIONS} idle connections`, 'RSS before MB', 'RSS held MB', 'RSS closed MB', 'KB per conn', `< ${TARGET_KB} KB?`];
  return {
    title: `Idle connections, median of ${ctx.opts.reps} (fresh moonpost per measurement; VmRSS growth / connections held)`,
    table: renderTable(header, rows),
    notes: [`The Lua state's share: ${fmt(plain !== null && scripted !== null ? scripted - plain : null, 1)} KB per connection (all hooks minus no script).`],
    problems,
  };
}
