/**
 * Scenario g: relaying a queue to smtp-sink. 10,000 x 5 KB for a remote domain are queued by
 * smtp-source (20 connections, reused), then relayed to Postfix's smtp-sink on loopback:
 * - moonpost: queued into a moonpost with no `senders` (remote mail waits), which is stopped; then
 *   moonpost starts on the same data dir with a smarthost sender to the sink and bench/relayout.lua
 *   (CheckFile reads HeaderData and every HeaderLines entry); timed from the start until no `.env`
 *   file is left in <dataDir>/queue.
 * - Postfix: the private instance relays to the sink (relayhost, default_transport = smtp) with
 *   `defer_transports = smtp` while queueing; then defer_transports is cleared, `postfix reload`,
 *   `postqueue -f`; timed from the flush until its queue folders are empty.
 * A fresh sink per run counts what it received (-c); it must be exactly what was queued.
 * Target: moonpost >= Postfix.
 */
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { onCleanup } from './cleanup.js';
import type { BenchContext } from './peers.js';
import { startMoonpost } from './moonpost.js';
import { scaled } from './options.js';
import { startPostfix, type PostfixInstance } from './postfix.js';
import { findBinary, freePort, run, sleep } from './proc.js';
import { startSink } from './sink.js';
import { runSource } from './smtp-source.js';
import { fmt, median, renderTable, type Section } from './table.js';

export const RELAYOUT_LUA = fileURLToPath(new URL('./relayout.lua', import.meta.url));
export const RELAY_MESSAGES = 10_000;
const REMOTE = 'relay.example';
const SESSIONS = 20;
const SBIN = (name: string): string[] => [`/usr/sbin/${name}`, `/usr/bin/${name}`];
const log = (s: string): void => void process.stderr.write(`${s}\n`);

async function countMatching(dir: string, pred: (name: string) => boolean): Promise<number> {
  try {
    const entries = await readdir(dir, { recursive: true, withFileTypes: true });
    return entries.filter((e) => e.isFile() && pred(e.name)).length;
  } catch {
    return 0;
  }
}

/** Polls `count` until it equals `want`; stops when it has not changed for idleMs or after maxMs. */
async function waitFor(count: () => Promise<number>, want: number, idleMs: number, maxMs: number): Promise<{ n: number; ms: number | null }> {
  const t0 = Date.now();
  let last = -1;
  let changed = t0;
  for (;;) {
    const n = await count();
    const now = Date.now();
    if (n === want) return { n, ms: now - t0 };
    if (n !== last) [last, changed] = [n, now];
    if (now - changed >= idleMs || now - t0 >= maxMs) return { n, ms: null };
    await sleep(50);
  }
}

interface RelayRun {
  server: string;
  rate: number | null;
}

export async function runRelayScenario(ctx: BenchContext): Promise<Section> {
  const { opts, source, cli, domain } = ctx;
  const messages = scaled(opts, RELAY_MESSAGES, SESSIONS);
  const sinkBin = await findBinary(SBIN('smtp-sink'));
  const problems: string[] = [];
  if (!sinkBin) return { title: 'Relay (g)', table: 'smtp-sink not found', notes: [], problems: ['g: smtp-sink not found'] };
  const maxMs = 60_000 + messages * 20;
  const job = { messages, sessions: SESSIONS, bytes: 5120, reuse: true, domain: REMOTE };

  // moonpost
  const mpDir = join(ctx.root, 'moonpost-g');
  await mkdir(mpDir);
  const queueDir = join(mpDir, 'var', 'queue');
  const envFiles = (): Promise<number> => countMatching(queueDir, (n) => n.endsWith('.env'));
  const moonpostRun = async (rep: number): Promise<RelayRun> => {
    const port = await freePort();
    const holder = await startMoonpost(cli, mpDir, port, domain);
    const src = await runSource(source, { ...job, port });
    const queued = await waitFor(envFiles, messages, 15_000, maxMs);
    await holder.stop();
    const errs: string[] = [];
    if (src.code !== 0) errs.push(`smtp-source exit ${src.code}: ${src.stderr.split('\n').slice(-2).join(' / ')}`);
    if (queued.ms === null) errs.push(`${queued.n} of ${messages} queued`);
    let rate: number | null = null;
    let received = 0;
    if (errs.length === 0) {
      const sink = await startSink(sinkBin, await freePort());
      onCleanup('stop sink', () => void sink.stop());
      const extraConfig = [
        'senders:',
        `  - { id: 0, name: sink, mode: smarthost, host: 127.0.0.1, port: ${sink.port}, tls: none }`,
        'delivery: { runIntervalSeconds: 1 }',
      ];
      const t0 = Date.now();
      const mp = await startMoonpost(cli, mpDir, await freePort(), domain, { extraConfig, relayout: RELAYOUT_LUA });
      onCleanup('stop moonpost g', () => mp.stop());
      const drained = await waitFor(envFiles, 0, 30_000, maxMs);
      const ms = Date.now() - t0;
      await sleep(200);
      await mp.stop();
      received = await sink.stop();
      if (drained.ms === null) errs.push(`${drained.n} messages still queued (moonpost ${mp.alive() ? 'running' : 'exited'}): ${mp.tail()}`);
      if (received !== messages) errs.push(`sink received ${received} of ${messages}`);
      if (errs.length === 0) rate = (messages * 1000) / ms;
    }
    if (errs.length > 0) problems.push(`g moonpost rep ${rep + 1}: ${errs.join('; ')}`);
    log(`bench: g) rep ${rep + 1} moonpost: ${fmt(rate)} msg/s relayed, sink got ${received}/${messages}${errs.length ? ` PROBLEM: ${errs.join('; ')}` : ''}`);
    return { server: 'moonpost', rate };
  };

  // Postfix
  let pf: PostfixInstance | null = null;
  const postfix = await findBinary(SBIN('postfix'));
  const postconf = await findBinary(SBIN('postconf'));
  const postqueue = await findBinary(SBIN('postqueue'));
  if (opts.postfix && postfix && postconf && postqueue && process.getuid?.() === 0) {
    const dir = join(ctx.root, 'postfix-g');
    await mkdir(dir);
    pf = await startPostfix({ postfix, postconf }, dir, await freePort(), domain, 'nobody');
    onCleanup('stop postfix g', () => pf?.stop());
  } else log('bench: g) Postfix not available (needs root, postfix, postconf, postqueue); moonpost alone.');
  const spool = pf ? join(pf.dir, 'spool') : '';
  const etc = pf ? join(pf.dir, 'etc') : '';
  const inQueue = async (): Promise<number> => {
    let n = 0;
    for (const q of ['maildrop', 'incoming', 'active', 'deferred', 'hold']) n += await countMatching(join(spool, q), () => true);
    return n;
  };
  const deferredOnly = async (): Promise<number> => {
    const all = await inQueue();
    const d = await countMatching(join(spool, 'deferred'), () => true);
    return all === d ? d : -1;
  };
  const pfConf = async (settings: string[]): Promise<void> => {
    const r = await run(postconf as string, ['-c', etc, '-e', ...settings]);
    if (r.code !== 0) throw new Error(`postconf failed: ${r.stderr}`);
    const rl = await run(postfix as string, ['-c', etc, 'reload']);
    if (rl.code !== 0) throw new Error(`postfix reload failed: ${rl.stderr}`);
  };
  const postfixRun = async (rep: number): Promise<RelayRun> => {
    const inst = pf as PostfixInstance;
    const sink = await startSink(sinkBin, await freePort());
    onCleanup('stop sink', () => void sink.stop());
    await pfConf([`relayhost = [127.0.0.1]:${sink.port}`, 'default_transport = smtp', 'defer_transports = smtp']);
    await sleep(500);
    const src = await runSource(source, { ...job, port: inst.port });
    const queued = await waitFor(deferredOnly, messages, 15_000, maxMs);
    const errs: string[] = [];
    if (src.code !== 0) errs.push(`smtp-source exit ${src.code}: ${src.stderr.split('\n').slice(-2).join(' / ')}`);
    if (queued.ms === null) errs.push(`${queued.n} of ${messages} in the deferred queue`);
    let rate: number | null = null;
    let received = 0;
    if (errs.length === 0) {
      await pfConf(['defer_transports =']);
      await sleep(500);
      const t0 = Date.now();
      const f = await run(postqueue as string, ['-c', etc, '-f']);
      if (f.code !== 0) errs.push(`postqueue -f failed: ${f.stderr}`);
      const drained = await waitFor(inQueue, 0, 30_000, maxMs);
      const ms = Date.now() - t0;
      if (drained.ms === null) errs.push(`${drained.n} files still in Postfix's queue`);
      await sleep(200);
      received = await sink.stop();
      if (received !== messages) errs.push(`sink received ${received} of ${messages}`);
      if (errs.length === 0) rate = (messages * 1000) / ms;
    } else await sink.stop();
    if (errs.length > 0) problems.push(`g postfix rep ${rep + 1}: ${errs.join('; ')}`);
    log(`bench: g) rep ${rep + 1} postfix: ${fmt(rate)} msg/s relayed, sink got ${received}/${messages}${errs.length ? ` PROBLEM: ${errs.join('; ')}` : ''}`);
    return { server: 'postfix', rate };
  };

  const runs: RelayRun[] = [];
  for (let rep = 0; rep < opts.reps; rep++) {
    const order = pf ? (rep % 2 === 0 ? [moonpostRun, postfixRun] : [postfixRun, moonpostRun]) : [moonpostRun];
    for (const r of order) runs.push(await r(rep));
  }
  await pf?.stop();
  const rate = (s: string): number | null => median(runs.filter((r) => r.server === s && r.rate !== null).map((r) => r.rate as number));
  const m = rate('moonpost');
  const p = pf ? rate('postfix') : null;
  const ratio = m !== null && p !== null ? m / p : null;
  const header = ['Relay to smtp-sink (queued first)', 'moonpost msg/s', 'Postfix msg/s', 'moonpost/Postfix', '>= Postfix?'];
  const row = ['g) 5 KB, relayout.lua CheckFile', fmt(m), fmt(p), ratio === null ? 'n/a' : `${fmt(ratio * 100)}%`, ratio === null ? 'n/a' : ratio >= 1 ? 'yes' : 'NO'];
  return {
    title: `Relay, median of ${opts.reps} (${messages} x 5 KB queued, then relayed; moonpost timed from its start, Postfix from postqueue -f, until the queue is empty)`,
    table: renderTable(header, [row]),
    notes: ['Every run checked that the sink received exactly the queued count.'],
    problems,
  };
}
