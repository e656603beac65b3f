/** Starts the built moonpost (dist/cli.js) as a child process with a temp data dir and a benchmark config. */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface MoonpostInstance {
  pid: number;
  port: number;
  maildirNew: string;
  /** The last lines moonpost wrote on stderr (for error reports). */
  tail(): string;
  alive(): boolean;
  stop(): Promise<void>;
}

function config(dataDir: string, port: number, domain: string): string {
  return [
    `hostname: ${domain}`,
    `dataDir: ${JSON.stringify(dataDir)}`,
    'services:',
    `  - { id: 0, name: smtp, listen: 127.0.0.1, port: ${port} }`,
    'domains:',
    `  - { name: ${domain}, catchAll: true }`,
    'relay: { networks: [127.0.0.1/32], mode: ip }',
    'limits: { connectionsPerIp: 1000, connections: 2000, messageSize: 52428800 }',
    'log: { level: warn }',
    '',
  ].join('\n');
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

export async function startMoonpost(cli: string, dir: string, port: number, domain: string): Promise<MoonpostInstance> {
  const dataDir = join(dir, 'var');
  const cfg = join(dir, 'moonpost.yaml');
  await writeFile(cfg, config(dataDir, port, domain));
  const child = spawn(process.execPath, [cli, 'serve', '--config', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
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
      reject(new Error(`moonpost exited (code ${code}, signal ${sig}) before listening:\n${log}`));
    });
  });
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    if (!(await waitExit(child, 10_000))) {
      child.kill('SIGKILL');
      await waitExit(child, 5_000);
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
