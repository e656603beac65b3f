/**
 * Haraka as a peer: installed by the benchmark into a cache folder outside the project's dependencies
 * (default ~/.cache/moonpost-bench/haraka, or $BENCH_CACHE/haraka), with npm `overrides` for the two
 * versions this registry lacks, then run from a config folder written for the run:
 * - listening on one loopback port; `nodes=0` is one process, `nodes=2` a cluster master and 2 workers;
 * - plugins: bench_rdns (answers the reverse lookup itself, so no DNS query leaves the machine),
 *   rcpt_to.in_host_list (the bench domain is local), bench_count (counts accepted messages by appending
 *   one byte per message to a file, at `queue_ok`), queue/discard (with YES_REALLY_DO_DISCARD=1).
 * So Haraka accepts and discards, without writing or fsyncing the message: it is not durable, unlike
 * moonpost and Postfix, and the table says so.
 *
 * With `maildir` set, bench_maildir takes queue/discard's place: Haraka has no local delivery of
 * its own, so this is the least a durable Haraka does before its 250, as moonpost does: the message
 * written to `tmp/`, fsynced, renamed into `new/`, and `new/` fsynced.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { treePids } from './proctree.js';
import { run, waitExit, waitForGreeting } from './proc.js';

export const HARAKA_VERSION = '3.3.4';
const log = (s: string): void => void process.stderr.write(`${s}\n`);

export function harakaCacheDir(env: NodeJS.ProcessEnv): string {
  return join(env.BENCH_CACHE || join(homedir(), '.cache', 'moonpost-bench'), 'haraka');
}

/** Installs Haraka into `dir` unless that version is already there; returns the path of bin/haraka. */
export async function ensureHaraka(dir: string): Promise<string> {
  const bin = join(dir, 'node_modules', 'Haraka', 'bin', 'haraka');
  try {
    const pkg = JSON.parse(await readFile(join(dir, 'node_modules', 'Haraka', 'package.json'), 'utf8')) as { version?: string };
    if (pkg.version === HARAKA_VERSION) return bin;
  } catch {
    /* not installed yet */
  }
  await mkdir(dir, { recursive: true });
  const pkg = {
    name: 'moonpost-bench-haraka',
    private: true,
    description: 'Haraka for moonpost benchmarks (installed by bench/haraka.ts)',
    dependencies: { Haraka: HARAKA_VERSION },
    // The registry here lacks encoding-japanese 2.5.0 and libqp 3.0.1 (pulled in through libmime).
    overrides: { 'encoding-japanese': '2.4.0', libqp: '2.1.2' },
  };
  await writeFile(join(dir, 'package.json'), JSON.stringify(pkg, null, 2) + '\n');
  log(`bench: installing Haraka ${HARAKA_VERSION} into ${dir} (npm install, once)...`);
  const r = await run('npm', ['install', '--prefix', dir, '--no-audit', '--no-fund', '--omit=optional', '--loglevel=error'], 300_000);
  if (r.code !== 0) throw new Error(`npm install of Haraka failed (exit ${r.code}): ${r.stderr.trim().split('\n').slice(-5).join(' / ')}`);
  await stat(bin);
  return bin;
}

export interface HarakaInstance {
  pid: number;
  port: number;
  /** Messages accepted (250 after DATA) since the start. */
  accepted(): Promise<number>;
  tail(): string;
  alive(): boolean;
  stop(): Promise<void>;
}

const RDNS_PLUGIN = `// Loopback benchmark: answer the reverse DNS lookup here, so no query leaves the machine.
exports.register = function () {
  this.register_hook('lookup_rdns', 'rdns')
}
exports.rdns = (next) => next(OK, 'localhost')
`;

const COUNT_PLUGIN = (file: string): string => `// Counts accepted messages: one byte appended per message that a queue plugin accepted.
const fs = require('node:fs')
exports.register = function () {
  this.register_hook('queue_ok', 'count')
}
exports.count = (next) => {
  fs.appendFile(${JSON.stringify(file)}, '.', () => {})
  next()
}
`;

const MAILDIR_PLUGIN = (maildir: string): string => `// Durable delivery before the 250: tmp/, fsync, rename into new/, fsync new/.
const fs = require('node:fs')
const path = require('node:path')
const root = ${JSON.stringify(maildir)}
let seq = 0
exports.register = function () {
  this.register_hook('queue', 'store')
}
exports.store = function (next, connection) {
  const txn = connection.transaction
  const name = Date.now() + '.P' + process.pid + 'Q' + seq++ + '.haraka'
  const tmp = path.join(root, 'tmp', name)
  const failed = (err) => next(DENYSOFT, 'cannot store the message: ' + err.message)
  const ws = fs.createWriteStream(tmp, { flush: true })
  ws.on('error', failed)
  ws.on('close', () => {
    fs.rename(tmp, path.join(root, 'new', name), (err) => {
      if (err) return failed(err)
      fs.open(path.join(root, 'new'), 'r', (err, fd) => {
        if (err) return failed(err)
        fs.fsync(fd, (err) => fs.close(fd, () => (err ? failed(err) : next(OK))))
      })
    })
  })
  txn.message_stream.pipe(ws, { line_endings: '\\r\\n' })
}
`;

/**
 * Writes a Haraka config folder under `dir` (new) and starts Haraka on 127.0.0.1:port with `nodes`
 * (0 = one process); with `maildir`, it stores every message there durably instead of discarding it.
 */
export async function startHaraka(bin: string, haraka: string, dir: string, port: number, domain: string, nodes: number, maildir?: string): Promise<HarakaInstance> {
  const cfg = join(dir, 'config');
  const plugins = join(dir, 'plugins');
  await mkdir(cfg, { recursive: true });
  await mkdir(plugins, { recursive: true });
  const countFile = join(dir, 'accepted.count');
  await writeFile(countFile, '');
  // connection.ini and the rest come from Haraka's own defaults; only what the bench needs is set here.
  const pkgConfig = join(haraka, 'node_modules', 'Haraka', 'config');
  await writeFile(join(cfg, 'connection.ini'), await readFile(join(pkgConfig, 'connection.ini')));
  await writeFile(join(cfg, 'smtp.ini'), `listen=127.0.0.1:${port}\nnodes=${nodes}\n`);
  await writeFile(join(cfg, 'plugins'), `bench_rdns\nrcpt_to.in_host_list\nbench_count\n${maildir ? 'bench_maildir' : 'queue/discard'}\n`);
  if (maildir) {
    for (const sub of ['tmp', 'new', 'cur']) await mkdir(join(maildir, sub), { recursive: true });
    await writeFile(join(plugins, 'bench_maildir.js'), MAILDIR_PLUGIN(maildir));
  }
  await writeFile(join(cfg, 'host_list'), `${domain}\n`);
  await writeFile(join(cfg, 'me'), `haraka.${domain}\n`);
  await writeFile(join(cfg, 'log.ini'), '[main]\nlevel=warn\n');
  await writeFile(join(plugins, 'bench_rdns.js'), RDNS_PLUGIN);
  await writeFile(join(plugins, 'bench_count.js'), COUNT_PLUGIN(countFile));

  // Its own process group, so that a stuck cluster can be killed as a whole (by this group's id).
  const child = spawn(process.execPath, [bin, '-c', dir], {
    cwd: dir,
    detached: true,
    env: { ...process.env, YES_REALLY_DO_DISCARD: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const keep = (s: string): void => void (out = (out + s).slice(-8192));
  child.stdout?.setEncoding('utf8');
  child.stderr?.setEncoding('utf8');
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const pid = child.pid as number;
  const alive = (): boolean => child.exitCode === null && child.signalCode === null;
  const stop = async (): Promise<void> => {
    if (!alive()) return;
    const pids = treePids(pid);
    child.kill('SIGTERM');
    if (!(await waitExit(child, 10_000))) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
      await waitExit(child, 5_000);
    }
    // Workers that outlived their master (checked by command line, in case a pid was reused).
    for (const p of pids) {
      try {
        if (!readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(bin)) continue;
        process.kill(p, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  };
  const greeted = await waitForGreeting(port, 30_000);
  if (!greeted || !alive()) {
    await stop();
    throw new Error(`Haraka did not answer on 127.0.0.1:${port}: ${out.trim().split('\n').slice(-5).join(' / ')}`);
  }
  return {
    pid,
    port,
    accepted: async () => (await stat(countFile)).size,
    tail: () => out.split('\n').slice(-10).join('\n'),
    alive,
    stop,
  };
}
