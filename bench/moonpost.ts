/** Starts the built moonpost (dist/cli.js) as a child process with a temp data dir and a benchmark config. */
import { spawn } from 'node:child_process';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { readFileSync } from 'node:fs';
import { withFdLimit } from './fd-limit.js';
import { treePids } from './proctree.js';
import { waitExit, waitForGreeting } from './proc.js';

export interface MoonpostOptions {
  /** The `limits:` flow mapping of the config (default: 1000 per IP, 2000 in all, 50 MB messages). */
  limits?: string;
  /** A Lua file installed as <dataDir>/scripts/SMTPSVR.LUA before the start. */
  script?: string;
  /** Raise the open-files soft limit to at least this (through `sh -c 'ulimit -n'`). */
  fdLimit?: number;
  /** Extra top-level config lines (e.g. `senders:` and `delivery:`). */
  extraConfig?: string[];
  /** A Lua file installed as <dataDir>/scripts/relayout.lua before the start. */
  relayout?: string;
  /** `workers: N` in the config (processes sharing the listening socket); omitted when undefined. */
  workers?: number;
}

/** moonpost refused the `workers` key (a build without multi-process support). */
export class WorkersUnsupportedError extends Error {}

export interface MoonpostInstance {
  pid: number;
  port: number;
  maildirNew: string;
  /** The last lines moonpost wrote on stderr (for error reports). */
  tail(): string;
  alive(): boolean;
  stop(): Promise<void>;
}

const DEFAULT_LIMITS = '{ connectionsPerIp: 1000, connections: 2000, messageSize: 52428800 }';

function config(dataDir: string, port: number, domain: string, limits: string, extra: string[]): string {
  return [
    `hostname: ${domain}`,
    `dataDir: ${JSON.stringify(dataDir)}`,
    'services:',
    `  - { id: 0, name: smtp, listen: 127.0.0.1, port: ${port} }`,
    'domains:',
    `  - { name: ${domain}, catchAll: true }`,
    'relay: { networks: [127.0.0.1/32], mode: ip }',
    `limits: ${limits}`,
    'log: { level: warn }',
    ...extra,
    '',
  ].join('\n');
}

export async function startMoonpost(cli: string, dir: string, port: number, domain: string, opts: MoonpostOptions = {}): Promise<MoonpostInstance> {
  const dataDir = join(dir, 'var');
  const cfg = join(dir, 'moonpost.yaml');
  const extra = [...(opts.workers !== undefined ? [`workers: ${opts.workers}`] : []), ...(opts.extraConfig ?? [])];
  await writeFile(cfg, config(dataDir, port, domain, opts.limits ?? DEFAULT_LIMITS, extra));
  if (opts.script) {
    await mkdir(join(dataDir, 'scripts'), { recursive: true });
    await copyFile(opts.script, join(dataDir, 'scripts', 'SMTPSVR.LUA'));
  }
  if (opts.relayout) {
    await mkdir(join(dataDir, 'scripts'), { recursive: true });
    await copyFile(opts.relayout, join(dataDir, 'scripts', 'relayout.lua'));
  }
  // The same V8 flags as `npm start` and bin/moonpost.js: a small young generation and an old
  // generation kept near its live size hold RSS down under load.
  const argv = ['--max-semi-space-size=4', '--heap-growing-percent=50', '--expose-gc', cli, 'serve', '--config', cfg];
  // With a wrapper, `exec` keeps the pid: child.pid is moonpost's own.
  const [cmd, args] = opts.fdLimit ? withFdLimit(process.execPath, argv, opts.fdLimit) : [process.execPath, argv];
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr?.setEncoding('utf8');
  const ready = new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('moonpost did not report "listening on" within 20 s')), 20_000);
    child.stderr?.on('data', (s: string) => {
      log = (log + s).slice(-8192);
      if (log.includes(`listening on 127.0.0.1:${port}`)) {
        clearTimeout(t);
        resolve();
      }
    });
    child.once('exit', (code, sig) => {
      clearTimeout(t);
      if (opts.workers !== undefined && /unknown key.*"workers"/.test(log)) reject(new WorkersUnsupportedError('workers not supported'));
      else reject(new Error(`moonpost exited (code ${code}, signal ${sig}) before listening:\n${log}`));
    });
    // With several workers the "listening on" line may come from each of them, or in another form:
    // a greeting on the port is proof enough.
    if (opts.workers !== undefined) {
      void waitForGreeting(port, 20_000).then((ok) => {
        if (ok) {
          clearTimeout(t);
          resolve();
        }
      });
    }
  });
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const pids = treePids(child.pid as number);
    child.kill('SIGTERM');
    if (!(await waitExit(child, 10_000))) {
      child.kill('SIGKILL');
      await waitExit(child, 5_000);
    }
    // Workers that outlived their master (checked by command line, in case a pid was reused).
    for (const p of pids.slice(1)) {
      try {
        if (readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(dirname(cli))) process.kill(p, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  };
  try {
    await ready;
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    pid: child.pid as number,
    port,
    maildirNew: join(dataDir, 'mail', domain, 'user', 'new'),
    tail: () => log.split('\n').slice(-10).join('\n'),
    alive: () => child.exitCode === null && child.signalCode === null,
    stop,
  };
}
