/** One measured smtp-source run against one server, with the Maildir check afterwards. */
import { countFiles, emptyDir, waitForCount } from './maildir.js';
import { startRssWindow } from './rss.js';
import { runSource, type SourceJob } from './smtp-source.js';

export interface Target {
  name: string;
  port: number;
  maildirNew: string;
  /** When set, the process whose memory is sampled during the run. */
  pid?: number;
  /** A problem with the server after a failed run (e.g. it exited), or null. */
  diagnose?: () => string | null;
}

export interface TrialResult {
  server: string;
  /** Accepted messages per second, start to end of smtp-source; null if the run failed. */
  rate: number | null;
  /** Messages per second until the last one was in the Maildir; null if not all arrived. */
  e2eRate: number | null;
  delivered: number;
  peakMb: number | null;
  problem: string | null;
}

export async function runTrial(bin: string, target: Target, job: Omit<SourceJob, 'port'>): Promise<TrialResult> {
  await emptyDir(target.maildirNew);
  const leftover = await countFiles(target.maildirNew);
  if (leftover !== 0) throw new Error(`${target.name}: ${leftover} files remain in ${target.maildirNew} after cleaning`);
  const rss = target.pid === undefined ? null : startRssWindow(target.pid);
  const src = await runSource(bin, { ...job, port: target.port });
  // Generous: stop waiting once nothing new has arrived for 15 s, or after 3 minutes in all.
  const arrival = await waitForCount(target.maildirNew, job.messages, 15_000, 180_000);
  const mem = rss?.end() ?? { peakMb: null };
  const problems: string[] = [];
  if (src.timedOut) problems.push(`smtp-source killed after timeout`);
  else if (src.code !== 0) problems.push(`smtp-source exit ${src.code}: ${src.stderr.split('\n').slice(-3).join(' / ')}`);
  if (arrival.count !== job.messages) problems.push(`${arrival.count} of ${job.messages} messages in the Maildir`);
  if (problems.length > 0) {
    const d = target.diagnose?.();
    if (d) problems.push(d);
  }
  const ok = !src.timedOut && src.code === 0;
  return {
    server: target.name,
    rate: ok ? (job.messages * 1000) / src.ms : null,
    e2eRate: ok && arrival.waitedMs !== null ? (job.messages * 1000) / (src.ms + arrival.waitedMs) : null,
    delivered: arrival.count,
    peakMb: mem.peakMb,
    problem: problems.length > 0 ? problems.join('; ') : null,
  };
}
