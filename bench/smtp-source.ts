/** Runs Postfix's smtp-source once against 127.0.0.1:port, timed from spawn to exit, killed after a timeout. */
import { spawn, type ChildProcess } from 'node:child_process';

export interface SourceJob {
  messages: number;
  sessions: number;
  bytes: number;
  /** Reuse connections (-d): the -m total is shared by the -s sessions, each sending until it runs out. */
  reuse: boolean;
  port: number;
  domain: string;
}

export interface SourceResult {
  ms: number;
  code: number | null;
  timedOut: boolean;
  stderr: string;
}

const running = new Set<ChildProcess>();

/** Kills any smtp-source still running (for cleanup on SIGINT or error). */
export function killAllSources(): void {
  for (const c of running) c.kill('SIGKILL');
}

/**
 * A generous limit for a loaded shared machine: 60 s plus 25 ms per message plus 1 MB/s of payload
 * (10,000 x 5 KB: 5 min; 1,000 x 1 MB: 18 min; a scripted 1 MB run at 7 msg/s needs under 3).
 */
export function timeoutFor(job: SourceJob): number {
  return 60_000 + job.messages * (25 + job.bytes / 1_000);
}

export function sourceArgs(job: SourceJob): string[] {
  const args = ['-m', String(job.messages), '-s', String(job.sessions), '-l', String(job.bytes)];
  if (job.reuse) args.push('-d');
  args.push('-f', `bench@source.${job.domain}`, '-t', `user@${job.domain}`, '-M', `source.${job.domain}`);
  args.push(`127.0.0.1:${job.port}`);
  return args;
}

export function runSource(bin: string, job: SourceJob): Promise<SourceResult> {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(bin, sourceArgs(job), { stdio: ['ignore', 'ignore', 'pipe'] });
    running.add(child);
    let stderr = '';
    let timedOut = false;
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (s: string) => {
      stderr = (stderr + s).slice(-4096);
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutFor(job));
    const done = (code: number | null): void => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      clearTimeout(timer);
      running.delete(child);
      resolve({ ms, code, timedOut, stderr: stderr.trim() });
    };
    child.once('error', (err) => {
      stderr += err.message;
      done(null);
    });
    child.once('exit', (code) => done(code));
  });
}
