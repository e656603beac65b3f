/**
 * Idle connections, fresh moonpost per measurement: warm up with 100 connections, take the memory of
 * moonpost's process tree (its workers included), open N connections from a child process
 * (bench/idle-holder.ts; the client sockets live there, not in moonpost) that each read the greeting
 * (so Start() ran and the session's Lua state exists), wait for things to settle, take the memory
 * again, close them. Memory is the sum of VmRSS over the tree (PSS shown too for several workers).
 * e: 2,000 connections, without and with bench/all-hooks.lua: KB per idle connection =
 *    (held - before) / connections held; target under 100 KB with the script (issue 3).
 * h: 10,000 connections held at once, all hooks, 1 process and `workers: 2` (n/a when moonpost does
 *    not know the key): RSS while held; target under 1 GB (issue 8). One repetition (opening 10,000
 *    connections takes a while; the memory of idle sessions varies little between runs).
 * RSS after closing is shown too: WebAssembly memory never shrinks, so the Lua heap stays resident.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { onCleanup } from './cleanup.js';
import { fdSoftLimit } from './fd-limit.js';
import { startHolder, type OpenReport } from './holder-client.js';
import { startMoonpost, WorkersUnsupportedError } from './moonpost.js';
import { IDLE_CONNECTIONS, MANY_IDLE_CONNECTIONS } from './options.js';
import { ALL_HOOKS_LUA, type BenchContext } from './peers.js';
import { freePort, sleep } from './proc.js';
import { treeMem } from './proctree.js';
import { fmt, median, renderTable, type Section } from './table.js';

/** all-hooks.lua's Start() greeting ends with this. */
const MARKER = '(scripted)';
const WARMUP_CONNECTIONS = 100;
const SETTLE_MS = 3000;
const TARGET_KB = 100;
const TARGET_MANY_MB = 1024;

const log = (s: string): void => void process.stderr.write(`${s}\n`);

interface IdleSample {
  beforeKb: number;
  afterKb: number;
  closedKb: number;
  /** PSS summed over the tree while held (kB). */
  afterPssKb: number;
  held: number;
  processes: number;
}

interface Steady {
  rssKb: number;
  pssKb: number;
  processes: number;
}

/** Median of a few readings of the tree's memory 200 ms apart, or null. */
async function steadyMem(pid: number): Promise<Steady | null> {
  const xs: Steady[] = [];
  for (let i = 0; i < 5; i++) {
    const m = treeMem([pid]);
    if (m.processes > 0) xs.push({ rssKb: m.rssMb * 1024, pssKb: m.pssMb * 1024, processes: m.processes });
    await sleep(200);
  }
  if (xs.length === 0) return null;
  return { rssKb: median(xs.map((x) => x.rssKb)) as number, pssKb: median(xs.map((x) => x.pssKb)) as number, processes: Math.max(...xs.map((x) => x.processes)) };
}

/** Opens `count` connections in the holder, runs `during` while they are held, then closes them. */
async function hold<T>(port: number, count: number, marker: string, during: () => Promise<T>): Promise<{ r: OpenReport; value: T; closedEarly: number | null }> {
  const h = startHolder(port, count, marker);
  onCleanup('kill connection holder', () => h.kill());
  try {
    const r = await h.opened(240_000);
    const value = await during();
    const closedEarly = await h.close();
    return { r, value, closedEarly };
  } finally {
    h.kill();
  }
}

interface Variant {
  label: string;
  script?: string;
  workers?: number;
}

async function measureOnce(ctx: BenchContext, dir: string, v: Variant, count: number): Promise<IdleSample> {
  await mkdir(dir);
  const limits = `{ connections: ${count + 2000}, connectionsPerIp: ${count + 2000}, messageSize: 52428800 }`;
  const mp = await startMoonpost(ctx.cli, dir, await freePort(), ctx.domain, { limits, script: v.script, fdLimit: count + 1024, workers: v.workers });
  onCleanup('stop moonpost (idle)', () => mp.stop());
  try {
    const limit = fdSoftLimit(mp.pid);
    if (limit !== null && limit < count + 64) throw new Error(`moonpost's open-files limit is ${limit}, too low for ${count} connections (raised as far as the hard limit allows; raise that with \`ulimit -Hn\` as root)`);
    const marker = v.script ? MARKER : '';
    await hold(mp.port, WARMUP_CONNECTIONS, marker, async () => undefined);
    await sleep(SETTLE_MS);
    const before = await steadyMem(mp.pid);
    const { r, value: after, closedEarly } = await hold(mp.port, count, marker, async () => {
      await sleep(SETTLE_MS);
      return steadyMem(mp.pid);
    });
    const issues: string[] = [];
    if (r.opened !== count) issues.push(`${r.opened} of ${count} connections greeted (${r.errors.join('; ')})`);
    if (closedEarly !== 0) issues.push(`moonpost closed ${closedEarly ?? 'an unknown number of'} connections while they were held`);
    if (v.script && r.marked !== r.opened) issues.push(`${r.marked} of ${r.opened} greetings came from the script's Start()`);
    if (!mp.alive()) issues.push(`moonpost exited:\n${mp.tail()}`);
    if (issues.length > 0) throw new Error(issues.join('; '));
    await sleep(SETTLE_MS);
    const closed = await steadyMem(mp.pid);
    if (before === null || after === null || closed === null) throw new Error(`cannot read /proc/${mp.pid}/smaps_rollup`);
    log(`bench: idle ${v.label}: held ${r.opened} (opened in ${r.ms} ms), RSS ${fmt(before.rssKb / 1024, 1)} -> ${fmt(after.rssKb / 1024, 1)} MB (PSS ${fmt(after.pssKb / 1024, 1)} MB, ${after.processes} processes), ${fmt(closed.rssKb / 1024, 1)} MB after closing`);
    return { beforeKb: before.rssKb, afterKb: after.rssKb, closedKb: closed.rssKb, afterPssKb: after.pssKb, held: r.opened, processes: after.processes };
  } finally {
    await mp.stop();
  }
}

/** Runs each variant `reps` times (alternating order); samples per label, and the labels moonpost refused. */
async function measureAll(ctx: BenchContext, id: string, variants: Variant[], count: number, reps: number, problems: string[]): Promise<{ samples: Map<string, IdleSample[]>; unsupported: Set<string> }> {
  const samples = new Map<string, IdleSample[]>(variants.map((v) => [v.label, []]));
  const unsupported = new Set<string>();
  for (let rep = 0; rep < reps; rep++) {
    const order = rep % 2 === 0 ? variants : [...variants].reverse();
    for (const v of order) {
      if (unsupported.has(v.label)) continue;
      try {
        samples.get(v.label)!.push(await measureOnce(ctx, join(ctx.root, `idle-${id}-${rep + 1}-${v.label.replace(/\W+/g, '-')}`), v, count));
      } catch (err) {
        if (err instanceof WorkersUnsupportedError) {
          unsupported.add(v.label);
          log(`bench: ${id}) ${v.label}: n/a (workers not supported)`);
          continue;
        }
        log(`bench:   PROBLEM: ${id}) ${v.label} rep ${rep + 1}: ${(err as Error).message}`);
        problems.push(`${id} ${v.label} rep ${rep + 1}: ${(err as Error).message}`);
      }
    }
  }
  return { samples, unsupported };
}

export async function runIdleScenario(ctx: BenchContext): Promise<Section> {
  const variants: Variant[] = [
    { label: 'no script', script: undefined },
    { label: 'all hooks', script: ALL_HOOKS_LUA },
  ];
  const problems: string[] = [];
  const { samples } = await measureAll(ctx, 'e', variants, IDLE_CONNECTIONS, ctx.opts.reps, problems);
  const perConn = (label: string): number | null => median(samples.get(label)!.map((s) => (s.afterKb - s.beforeKb) / s.held));
  const mb = (label: string, k: 'beforeKb' | 'afterKb' | 'closedKb'): number | null => {
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
    title: `Idle connections, median of ${ctx.opts.reps} (fresh moonpost per measurement; RSS growth / connections held)`,
    table: renderTable(header, rows),
    notes: [`The Lua state's share: ${fmt(plain !== null && scripted !== null ? scripted - plain : null, 1)} KB per connection (all hooks minus no script).`],
    problems,
  };
}

export async function runManyIdleScenario(ctx: BenchContext): Promise<Section> {
  const variants: Variant[] = [
    { label: 'moonpost, 1 process, all hooks', script: ALL_HOOKS_LUA },
    { label: 'moonpost, workers: 2, all hooks', script: ALL_HOOKS_LUA, workers: 2 },
  ];
  const problems: string[] = [];
  const { samples, unsupported } = await measureAll(ctx, 'h', variants, MANY_IDLE_CONNECTIONS, 1, problems);
  const rows = variants.map((v) => {
    if (unsupported.has(v.label)) return [`h) ${v.label}`, 'n/a (workers not supported)', '', '', '', '', ''];
    const s = samples.get(v.label)![0];
    if (!s) return [`h) ${v.label}`, 'failed', '', '', '', '', ''];
    const held = s.afterKb / 1024;
    return [`h) ${v.label}`, fmt(s.held), fmt(s.beforeKb / 1024, 1), fmt(held, 1), fmt(s.afterPssKb / 1024, 1), fmt((s.afterKb - s.beforeKb) / s.held, 1), held < TARGET_MANY_MB ? 'yes' : 'NO'];
  });
  const header = [`${MANY_IDLE_CONNECTIONS} idle connections at once`, 'held', 'RSS before MB', 'RSS held MB', 'PSS held MB', 'KB per conn', '< 1 GB?'];
  return {
    title: `Idle connections held at once (one run; RSS summed over moonpost's processes; each connection greeted by the script's Start())`,
    table: renderTable(header, rows),
    notes: [],
    problems,
  };
}
