/**
 * Scenario f: 1 MB messages with five base64 attachments, sent by bench/mime-load.ts over 20 reused
 * connections (pipelined MAIL/RCPT/DATA), to moonpost without a script and to moonpost running
 * bench/structure.lua (ProcessMessage walks the structure and attachments tables and adds a header).
 * Alternating per repetition, medians. Targets: script >= 60% of no script; peak RSS < 250 MB.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { onCleanup } from './cleanup.js';
import type { BenchContext } from './peers.js';
import { countWithHeader } from './header-check.js';
import { emptyDir, waitForCount } from './maildir.js';
import { buildAttachmentMessage, runLoad } from './mime-load.js';
import { startMoonpost, type MoonpostInstance } from './moonpost.js';
import { scaled } from './options.js';
import { freePort } from './proc.js';
import { queueLeftovers } from './queue.js';
import { startRssWindow } from './rss.js';
import { fmt, median, renderTable, type Section } from './table.js';

export const STRUCTURE_LUA = fileURLToPath(new URL('./structure.lua', import.meta.url));
export const ATTACH_MESSAGES = 300;
const SIZE = 1_048_576;
const SESSIONS = 20;
const TARGET_RATIO = 0.6;
const TARGET_RSS_MB = 250;
const HEADER = 'X-Bench-Structure: ok';
const log = (s: string): void => void process.stderr.write(`${s}\n`);

interface Run {
  name: string;
  rate: number | null;
  peakMb: number | null;
}

export async function runAttachScenario(ctx: BenchContext): Promise<Section> {
  const { opts, domain } = ctx;
  const messages = scaled(opts, ATTACH_MESSAGES, SESSIONS);
  const from = `bench@source.${domain}`;
  const to = `user@${domain}`;
  const body = buildAttachmentMessage(SIZE, from, to);
  const servers: { name: string; mp: MoonpostInstance; dir: string }[] = [];
  for (const [name, script] of [['no script', undefined], ['structure.lua', STRUCTURE_LUA]] as const) {
    const dir = join(ctx.root, `moonpost-f-${script ? 'script' : 'plain'}`);
    await mkdir(dir);
    const mp = await startMoonpost(ctx.cli, dir, await freePort(), domain, { script });
    onCleanup(`stop f ${name}`, () => mp.stop());
    log(`bench: f) moonpost "${name}" pid ${mp.pid} on 127.0.0.1:${mp.port}`);
    servers.push({ name, mp, dir });
  }
  const problems: string[] = [];
  const runs: Run[] = [];
  const trial = async (s: (typeof servers)[number], n: number, measured: boolean): Promise<Run> => {
    await emptyDir(s.mp.maildirNew);
    const rss = startRssWindow(s.mp.pid);
    const r = await runLoad({ port: s.mp.port, messages: n, sessions: SESSIONS, from, to, body, timeoutMs: 30_000 + n * 500 });
    const arrival = await waitForCount(s.mp.maildirNew, n, 15_000, 120_000);
    const peakMb = rss.end().peakMb;
    const errs: string[] = [];
    if (r.timedOut) errs.push('load client timed out');
    if (r.accepted !== n) errs.push(`${r.accepted} of ${n} accepted (${r.errors.slice(0, 3).join(' / ')})`);
    if (arrival.count !== n) errs.push(`${arrival.count} of ${n} in the Maildir`);
    if (measured) {
      const { files, withLine } = await countWithHeader(s.mp.maildirNew, HEADER);
      const want = s.name === 'no script' ? 0 : files;
      if (withLine !== want) errs.push(`${withLine} of ${files} delivered carry "${HEADER}", expected ${want}`);
    }
    if (errs.length > 0 && !s.mp.alive()) errs.push(`moonpost exited:\n${s.mp.tail()}`);
    const rate = errs.length === 0 ? (n * 1000) / r.ms : null;
    if (errs.length > 0) problems.push(`f ${s.name}${measured ? '' : ' warm-up'}: ${errs.join('; ')}`);
    log(`bench: f) ${measured ? '' : 'warm-up '}${s.name}: ${fmt(rate)} msg/s, ${arrival.count}/${n} delivered, peak RSS ${fmt(peakMb, 1)} MB${errs.length ? ` PROBLEM: ${errs.join('; ')}` : ''}`);
    return { name: s.name, rate, peakMb };
  };
  if (opts.warmup) for (const s of servers) await trial(s, SESSIONS * 2, false);
  for (let rep = 0; rep < opts.reps; rep++) {
    const order = rep % 2 === 0 ? servers : [...servers].reverse();
    for (const s of order) runs.push(await trial(s, messages, true));
  }
  for (const s of servers) {
    await emptyDir(s.mp.maildirNew);
    const left = await queueLeftovers(join(s.dir, 'var', 'queue'));
    if (left > 0) problems.push(`f ${s.name}: queue still holds ${left} files`);
    await s.mp.stop();
  }
  const rate = (name: string): number | null => median(runs.filter((r) => r.name === name && r.rate !== null).map((r) => r.rate as number));
  const peak = (name: string): number | null => {
    const p = runs.filter((r) => r.name === name && r.peakMb !== null).map((r) => r.peakMb as number);
    return p.length > 0 ? Math.max(...p) : null;
  };
  const a = rate('no script');
  const b = rate('structure.lua');
  const ratio = a !== null && b !== null ? b / a : null;
  const pb = peak('structure.lua');
  const header = ['1 MB, 5 attachments, 20 conns reused', 'no script msg/s', 'structure.lua msg/s', 'script/no script', `>= ${TARGET_RATIO * 100}%?`, 'peak RSS MB (none)', 'peak RSS MB (script)', `< ${TARGET_RSS_MB} MB?`];
  const row = ['f) ProcessMessage reads structure', fmt(a, 1), fmt(b, 1), ratio === null ? 'n/a' : `${fmt(ratio * 100)}%`, ratio === null ? 'n/a' : ratio >= TARGET_RATIO ? 'yes' : 'NO', fmt(peak('no script'), 1), fmt(pb, 1), pb === null ? 'n/a' : pb < TARGET_RSS_MB ? 'yes' : 'NO'];
  return {
    title: `Message analysis, median of ${opts.reps} (${messages} x ${body.length} bytes per run, multipart/mixed with five base64 attachments)`,
    table: renderTable(header, [row]),
    notes: [`Every scripted delivery was checked for "${HEADER}" (added by ProcessMessage after checking 7 parts, 5 attachments).`],
    problems,
  };
}
