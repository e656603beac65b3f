import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { freePort } from './test-util.js';

export const SMTP_SINK = '/usr/sbin/smtp-sink';
export const haveSmtpSink = existsSync(SMTP_SINK);

export interface Sink {
  port: number;
  /** Contents of the dump files (one per transaction), oldest first, once `count` exist. */
  dumps(count: number, timeoutMs?: number): Promise<string[]>;
  stop(): Promise<void>;
}

async function connectable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect({ host: '127.0.0.1', port });
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/**
 * Postfix's smtp-sink on a free loopback port, each transaction dumped to its own file (`-d`).
 * `args` are its options (`-8` no 8BITMIME, `-N` no DSN, `-p` no PIPELINING, `-r`/`-f` soft/hard
 * reject commands, `-q`/`-Q` disconnect, `-W cmd:secs` delay, `-e` no ESMTP, ...).
 */
export async function startSink(args: string[] = []): Promise<Sink> {
  const dir = await mkdtemp(join(tmpdir(), 'moonpost-sink-'));
  await chmod(dir, 0o777);
  let child: ChildProcess | null = null;
  let port = 0;
  for (let attempt = 0; attempt < 5 && !child; attempt++) {
    port = await freePort();
    const user = process.getuid?.() === 0 ? ['-u', 'nobody'] : [];
    const p = spawn(SMTP_SINK, [...user, '-d', `${dir}/%Y%m%d%H%M%S.`, ...args, `127.0.0.1:${port}`, '64'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline && p.exitCode === null && !(await connectable(port))) await new Promise((r) => setTimeout(r, 20));
    if (p.exitCode === null && (await connectable(port))) child = p;
    else {
      p.kill();
      if (attempt === 4) throw new Error(`smtp-sink did not start: ${stderr}`);
    }
  }
  const proc = child!;
  return {
    port,
    async dumps(count, timeoutMs = 3000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const names = (await readdir(dir)).sort();
        if (names.length >= count || Date.now() > deadline) return Promise.all(names.map((n) => readFile(join(dir, n), 'utf8')));
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async stop() {
      if (proc.exitCode === null) {
        proc.kill();
        await once(proc, 'exit');
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
