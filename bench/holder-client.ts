/**
 * Starts bench/idle-holder.ts as a child process (its own open-files limit raised, see fd-limit.ts)
 * and talks to it: one JSON line when the connections are open, "close" to close them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { withFdLimit } from './fd-limit.js';

export interface OpenReport {
  opened: number;
  failed: number;
  /** Connections whose greeting held the marker (the script's Start() ran). */
  marked: number;
  ms: number;
  errors: string[];
  fdLimit: number | null;
}

export interface Holder {
  /** Resolves when all connections are open (or failed); rejects if the holder exits or takes over `timeoutMs`. */
  opened(timeoutMs: number): Promise<OpenReport>;
  /** Closes the connections and waits (up to 20 s) for the holder to exit; how many the server had closed before (null if unknown). */
  close(): Promise<number | null>;
  kill(): void;
}

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SCRIPT = fileURLToPath(new URL('./idle-holder.ts', import.meta.url));

export function startHolder(port: number, count: number, marker: string): Holder {
  const argv = ['--import', 'tsx', SCRIPT, String(port), String(count), marker];
  const [cmd, args] = withFdLimit(process.execPath, argv, count + 1024);
  const child: ChildProcess = spawn(cmd, args, { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin?.on('error', () => undefined); // EPIPE when the holder already exited
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (s: string) => {
    stderr = (stderr + s).slice(-2048);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let closedEarly: number | null = null;
  const openReport = new Promise<OpenReport>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    rl.on('line', (line) => {
      try {
        const o = JSON.parse(line) as { event?: string; closedEarly?: number } & OpenReport;
        if (o.event === 'open') resolve(o);
        if (o.event === 'closed') closedEarly = o.closedEarly ?? null;
      } catch {
        /* not a report line */
      }
    });
    void exited.then(() => reject(new Error(`connection holder exited early: ${stderr.trim().slice(-500)}`)));
  });
  openReport.catch(() => undefined); // observed by opened(); avoid an unhandled rejection if never asked
  const kill = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  return {
    opened(timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`connection holder gave no report within ${timeoutMs} ms`)), timeoutMs);
      });
      return Promise.race([openReport, timeout]).finally(() => clearTimeout(timer));
    },
    async close() {
      child.stdin?.end('close\n');
      const t = setTimeout(kill, 20_000);
      await exited;
      clearTimeout(t);
      return closedEarly;
    },
    kill,
  };
}
