import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, type Harness } from '../helpers/harness.js';
import { TestClient } from '../helpers/smtp-client.js';
import { CLI, LoadGenerator, census, freePort, prng, tally, type Census } from '../helpers/crash-load.js';

// `workers: 2` through the real CLI (dist/cli.js): a primary and two SMTP worker processes
// sharing the port. Mail over many connections, locally and through a relay to a second
// moonpost, delivered exactly once; a worker killed with SIGKILL under load is replaced and
// nothing acknowledged is lost; SIGHUP reaches every worker; SIGTERM stops them all.

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const LOCAL = 'localhost';
const REMOTE = 'remote.test';
const TOKEN = 'workers-test-token-0123456789abcdef';

interface LogLine {
  msg?: string;
  worker?: number | string;
  role?: string;
  pid?: number;
  port?: number;
  signal?: string | null;
  [k: string]: unknown;
}

/** `node dist/cli.js serve` with its JSON log lines (stdout) kept for the assertions. */
class Moonpost {
  readonly child: ChildProcess;
  readonly lines: LogLine[] = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  private partial = '';

  constructor(configFile: string) {
    this.child = spawn(process.execPath, [CLI, 'serve', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe']});
    this.child.stdout!.setEncoding('utf8');
    this.child.stdout!.on('data', (d: string) => {
      const parts = (this.partial + d).split('\n');
      this.partial = parts.pop()!;
      for (const p of parts) {
        try {
          this.lines.push(JSON.parse(p) as LogLine);
        } catch {
          this.lines.push({ msg: `(not JSON) ${p}` });
        }
      }
    });
    this.child.stderr!.setEncoding('utf8');
    this.child.stderr!.on('data', (d: string) => (this.stderr += d));
    this.exited = new Promise((res) => this.child.once('close', (code, signal) => res({ code, signal })));
  }

  async ready(port: number, timeoutMs = 30_000): Promise<void> {
    await this.waitFor(() => this.stderr.includes(`listening on 127.0.0.1:${port}`), timeoutMs, 'moonpost to listen');
    // The primary's log lines (stdout) may come in a moment after its stderr.
    await this.waitFor(() => this.workerPids().size === 2, 5000, 'both workers\' "worker ready" lines');
  }

  async waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      if (this.child.exitCode !== null || this.child.signalCode !== null) throw new Error(`moonpost exited waiting for ${what}:\n${this.tail()}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (${new Date().toISOString()}, workers ${JSON.stringify([...this.workerPids()])}):\n${this.tail()}`);
      await sleep(20);
    }
  }

  log(msg: string, pred: (l: LogLine) => boolean = () => true): LogLine[] {
    return this.lines.filter((l) => l.msg === msg && pred(l));
  }

  /** The pid of every worker now running, by worker number (from the primary's "worker ready" lines). */
  workerPids(): Map<number, number> {
    const pids = new Map<number, number>();
    for (const l of this.log('worker ready', (l) => l.role === 'primary')) pids.set(Number(l.worker), Number(l.pid));
    return pids;
  }

  tail(): string {
    const supervision = this.lines.filter((l) => l.role === 'primary' && l.part === undefined).slice(-20);
    return `${this.stderr.slice(-3000)}\n${[...supervision, ...this.lines.slice(-10)]
      .map((l) => JSON.stringify(l))
      .join('\n')}`;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }
}

/** The kernel's word on a process (a killed one stays until its threads leave the kernel). */
function procState(pid: number): string {
  try {
    return readdirSync(`/proc/${pid}/task`)
      .map((t) => `${t} ${readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8').split(' ')[2]}`)
      .join(', ');
  } catch {
    return 'gone';
  }
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Stops each moonpost and any worker it left, then the sink, and removes the folder. */
async function teardown(s: Setup, ...servers: (Moonpost | null)[]): Promise<void> {
  for (const mp of servers) {
    if (!mp) continue;
    await mp.stop();
    for (const pid of mp.workerPids().values()) if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
  await s.sink.stop();
  await rm(s.dir, { recursive: true, force: true });
}

interface Setup {
  dir: string;
  dataDir: string;
  port: number;
  adminPort: number;
  configFile: string;
  sink: Harness;
}

/** What the load sent, against what arrived in the local Maildir and at the relay sink. */
async function outcome(s: Setup, tag: string, load: LoadGenerator): Promise<{ n: ReturnType<typeof tally>; found: Awaited<ReturnType<typeof census>> }> {
  const found = await census(tag, [
    { mailRoot: join(s.dataDir, 'mail'), domain: LOCAL },
    { mailRoot: join(s.sink.dataDir, 'mail'), domain: REMOTE },
  ]);
  return { n: tally(load.sent, found, REMOTE), found };
}

async function setup(extra: Record<string, unknown> = {}): Promise<Setup> {
  const dir = await mkdtemp(join(tmpdir(), 'moonpost-workers-'));
  const sink = await startServer({ hostname: 'sink.test', domains: [{ name: REMOTE, catchAll: true }], queue: { fsync: false } });
  const port = await freePort();
  const adminPort = await freePort();
  const dataDir = join(dir, 'data');
  const configFile = join(dir, 'moonpost.yaml');
  // JSON is YAML.
  const config = {
    hostname: 'workers.test',
    dataDir,
    workers: 2,
    services: [{ id: 0, name: 'smtp', listen: '127.0.0.1', port }],
    domains: [{ name: LOCAL, catchAll: true }],
    relay: { networks: ['127.0.0.1/32'], mode: 'ip' },
    senders: [{ id: 0, name: 'sink', mode: 'smarthost', host: '127.0.0.1', port: sink.port, tls: 'none' }],
    delivery: { runIntervalSeconds: 1, retry: { firstRetry: 1, maxInterval: 2 } },
    limits: { timeouts: { shutdown: 5 } },
    admin: { listen: '127.0.0.1', port: adminPort, tokens: [{ name: 'test', token: TOKEN }] },
    log: { level: 'info' },
    ...extra,
  };
  await writeFile(configFile, JSON.stringify(config, null, 2));
  return { dir, dataDir, port, adminPort, configFile, sink };
}

/** Waits until the queue folder holds no envelope and the sink has delivered what it took. */
async function drained(s: Setup, timeoutMs = 40_000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const files = await readdir(join(s.dataDir, 'queue'));
    if (!files.some((f) => f.endsWith('.env')) || Date.now() > deadline) break;
    await sleep(100);
  }
  for (const until = Date.now() + 10_000; s.sink.server.queue.list().length && Date.now() < until; ) await sleep(50);
  await s.sink.settle();
  return readdir(join(s.dataDir, 'queue'));
}

/** Copies in a mailbox beyond the first, acknowledged or not. */
function extraCopies(found: Census): number {
  let n = 0;
  for (const per of found.copies.values()) for (const k of per.values()) n += k - 1;
  return n;
}

async function metric(adminPort: number, name: string): Promise<{ labels: string; value: number }[]> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(res.status, 200);
  const text = await res.text();
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
    .map((l) => {
      const m = /^[^{ ]+(\{[^}]*\})? (\S+)$/.exec(l)!;
      return { labels: m[1] ?? '', value: Number(m[2]) };
    });
}

/** Opens a connection, says NOOP, and tells which worker (from the logs) answered what. */
async function noop(mp: Moonpost, port: number): Promise<{ worker: number; reply: string }> {
  const c = await TestClient.connect(port);
  try {
    assert.equal((await c.read()).code, 220);
    const reply = (await c.cmd('NOOP')).raw.trim();
    const local = c.socket.localPort!;
    await mp.waitFor(() => mp.log('connected', (l) => l.port === local).length > 0, 5000, `the log line of the connection from port ${local}`);
    const worker = Number(mp.log('connected', (l) => l.port === local)[0].worker);
    await c.cmd('QUIT');
    return { worker, reply };
  } finally {
    c.close();
  }
}

test('workers: 2 share the port; mail over many connections is delivered exactly once; SIGHUP reaches every worker; SIGTERM stops all', { timeout: 120_000 }, async () => {
  const s = await setup();
  // The scripts folder is a link, swapped to a new version below: the folder watch does not see
  // that, so only SIGHUP makes the workers take the new script.
  await mkdir(join(s.dir, 'scripts-v1'));
  await writeFile(join(s.dir, 'scripts-v1', 'SMTPSVR.LUA'), 'function DoNOOP() return "250 2.0.0 script v1" end\n');
  await mkdir(join(s.dir, 'scripts-v2'));
  await writeFile(join(s.dir, 'scripts-v2', 'SMTPSVR.LUA'), 'function DoNOOP() return "250 2.0.0 script v2" end\n');
  await symlink(join(s.dir, 'scripts-v1'), join(s.dir, 'scripts'));
  const config = JSON.parse(await readFile(s.configFile, 'utf8')) as Record<string, unknown>;
  await writeFile(s.configFile, JSON.stringify({ ...config, scripts: { dir: join(s.dir, 'scripts') } }));
  const mp = new Moonpost(s.configFile);
  try {
    await mp.ready(s.port);
    const pids = mp.workerPids();
    assert.deepEqual([...pids.keys()].sort(), [1, 2], mp.tail());
    const primaryPid = mp.child.pid!;
    for (const pid of pids.values()) assert.ok(alive(pid) && pid !== primaryPid);

    // Load: 10 connections, a few messages each, to local and remote recipients.
    const tag = `w${Date.now().toString(36)}`;
    const TOTAL = 300;
    const load = new LoadGenerator({ port: s.port, connections: 10, maxMessages: TOTAL, tag, random: prng(0x5eed), localDomain: LOCAL, remoteDomain: REMOTE });
    load.start();
    await mp.waitFor(() => [...load.sent.values()].filter((x) => x.final !== null).length >= TOTAL, 60_000, 'the load to finish');
    await load.stop();
    const leftovers = await drained(s);
    const { n, found } = await outcome(s, tag, load);
    const detail = `${JSON.stringify({ ...n, lostExamples: n.lostExamples.slice(0, 3) })}\n${mp.tail()}`;
    assert.equal(n.attempted, TOTAL, detail);
    assert.equal(n.acknowledged, TOTAL, `every message acknowledged: ${detail}`);
    assert.equal(n.lost, 0, detail);
    assert.equal(n.delivered, TOTAL, detail);
    assert.equal(extraCopies(found), 0, `no message delivered twice: ${detail}`);
    assert.ok(n.relayed >= 20, `the relay path was exercised: ${detail}`);
    assert.equal(n.misdelivered + n.damaged + n.foreign, 0, detail);
    assert.deepEqual(leftovers, [], detail);

    // Both workers served connections (each connection's log line names its worker).
    const byWorker = new Map<number, number>();
    for (const l of mp.log('connected')) byWorker.set(Number(l.worker), (byWorker.get(Number(l.worker)) ?? 0) + 1);
    assert.ok((byWorker.get(1) ?? 0) > 0 && (byWorker.get(2) ?? 0) > 0, `connections by worker: ${JSON.stringify([...byWorker])}`);
    assert.equal(load.connects, (byWorker.get(1) ?? 0) + (byWorker.get(2) ?? 0), 'every connection was served by a worker, none by the primary');

    // The primary's admin API counts what the workers did.
    await sleep(200); // the workers send their events every 50 ms
    const perWorker = await metric(s.adminPort, 'moonpost_worker_connections_total');
    assert.deepEqual(
      perWorker.map((m) => [m.labels, m.value]).sort(),
      [
        ['{worker="1"}', byWorker.get(1)],
        ['{worker="2"}', byWorker.get(2)],
      ],
    );
    const accepted = await metric(s.adminPort, 'moonpost_messages_accepted_total');
    assert.equal(accepted[0]?.value, TOTAL);
    assert.equal((await metric(s.adminPort, 'moonpost_workers'))[0]?.value, 2);

    // SIGHUP: before it, the swapped script is not seen; after it, every worker serves v2.
    const before = await Promise.all(Array.from({ length: 8 }, () => noop(mp, s.port)));
    assert.ok(before.every((b) => b.reply === '250 2.0.0 script v1'), JSON.stringify(before));
    await symlink(join(s.dir, 'scripts-v2'), join(s.dir, 'scripts-next'));
    await rename(join(s.dir, 'scripts-next'), join(s.dir, 'scripts'));
    await sleep(500);
    const unchanged = await noop(mp, s.port);
    assert.equal(unchanged.reply, '250 2.0.0 script v1', 'without SIGHUP the workers keep the script they had');
    mp.child.kill('SIGHUP');
    await mp.waitFor(() => mp.log('script loaded', (l) => l.worker === 1 && l.version === 2).length > 0 && mp.log('script loaded', (l) => l.worker === 2 && l.version === 2).length > 0, 10_000, 'both workers to load the new script');
    assert.equal(mp.log('SIGHUP: reloading scripts', (l) => l.worker === 1).length, 1);
    assert.equal(mp.log('SIGHUP: reloading scripts', (l) => l.worker === 2).length, 1);
    // Each worker accepts for itself (workerAccept: kernel), so which one takes a burst is the
    // kernel's choice: bursts go on until both have answered.
    const after: { worker: number; reply: string }[] = [];
    for (let round = 0; round < 20 && new Set(after.map((a) => a.worker)).size < 2; round++) {
      after.push(...(await Promise.all(Array.from({ length: 6 }, () => noop(mp, s.port)))));
    }
    assert.ok(after.every((a) => a.reply === '250 2.0.0 script v2'), JSON.stringify(after));
    assert.deepEqual([...new Set(after.map((a) => a.worker))].sort(), [1, 2], `both workers answered after SIGHUP: ${JSON.stringify(after)}`);

    // SIGTERM: an idle connection is told 421, every worker and the primary exit.
    const idle = await TestClient.connect(s.port);
    assert.equal((await idle.read()).code, 220);
    mp.child.kill('SIGTERM');
    assert.equal((await idle.read(10_000)).code, 421);
    idle.close();
    const { code } = await mp.exited;
    assert.equal(code, 0, mp.tail());
    for (const [id, pid] of pids) assert.equal(alive(pid), false, `worker ${id} (pid ${pid}) is gone`);
    assert.equal(mp.log('worker exited', (l) => l.role === 'primary').length, 2);
  } finally {
    await teardown(s, mp);
  }
});

test('workers: a worker killed with SIGKILL under load is replaced; nothing acknowledged is lost or doubled', { timeout: 240_000 }, async () => {
  const s = await setup();
  const mp = new Moonpost(s.configFile);
  const tag = `k${Date.now().toString(36)}`;
  const load = new LoadGenerator({ port: s.port, connections: 6, maxMessages: 5000, tag, random: prng(0xdead), localDomain: LOCAL, remoteDomain: REMOTE });
  try {
    await mp.ready(s.port);
    const first = mp.workerPids();
    assert.equal(first.size, 2);
    load.start();
    const killed: number[] = [];
    // Each worker in turn, while mail flows.
    for (const id of [1, 2, 1]) {
      const acked = load.acknowledged;
      await mp.waitFor(() => load.acknowledged >= acked + 30, 30_000, 'mail to flow');
      const pid = mp.workerPids().get(id)!;
      process.kill(pid, 'SIGKILL');
      killed.push(pid);
      const t0 = Date.now();
      await mp.waitFor(() => {
        const now = mp.workerPids().get(id);
        return now !== undefined && now !== pid && alive(now);
      }, 60_000, `worker ${id} to be replaced (old pid ${pid}: ${procState(pid)})`);
      console.log(`worker ${id} (pid ${pid}) replaced ${Date.now() - t0} ms after SIGKILL`);
    }
    const acked = load.acknowledged;
    await mp.waitFor(() => load.acknowledged >= acked + 50, 30_000, 'mail to flow after the restarts');
    await load.stop();
    const leftovers = await drained(s);
    const { n, found } = await outcome(s, tag, load);
    const detail = `${JSON.stringify({ ...n, lostExamples: n.lostExamples.slice(0, 3) })}, dropped ${load.dropped}\n${mp.tail()}`;
    assert.equal(n.lost, 0, `acknowledged messages lost: ${detail}`);
    assert.equal(n.delivered, n.acknowledged, detail);
    assert.equal(extraCopies(found), 0, `copies delivered twice: ${detail}`);
    assert.equal(n.misdelivered + n.damaged + n.foreign, 0, detail);
    assert.deepEqual(leftovers, [], `the dead workers' unfinished files were cleaned up: ${detail}`);
    assert.ok(n.acknowledged >= 150, detail);
    for (const pid of killed) assert.equal(alive(pid), false);
    const exits = mp.log('worker exited', (l) => l.signal === 'SIGKILL');
    assert.deepEqual(
      exits.map((e) => e.pid),
      killed,
      'the primary saw each kill',
    );
    assert.equal((await metric(s.adminPort, 'moonpost_worker_restarts_total'))[0]?.value, 3);
    // The killed workers' sessions left the live view with them.
    await sleep(200);
    assert.equal((await metric(s.adminPort, 'moonpost_smtp_connections_open'))[0]?.value, 0);
    assert.equal((await metric(s.adminPort, 'moonpost_workers'))[0]?.value, 2);

    mp.child.kill('SIGTERM');
    assert.equal((await mp.exited).code, 0, mp.tail());
    for (const pid of mp.workerPids().values()) assert.equal(alive(pid), false);
  } finally {
    await load.stop();
    await teardown(s, mp);
  }
});

test('workers: a primary killed with SIGKILL takes its workers with it at once; a new primary starts on the same queue', { timeout: 60_000 }, async () => {
  const s = await setup();
  const first = new Moonpost(s.configFile);
  let second: Moonpost | null = null;
  try {
    await first.ready(s.port);
    const pids = [...first.workerPids().values()];
    assert.equal(pids.length, 2, first.tail());
    const t0 = Date.now();
    first.child.kill('SIGKILL');
    await first.exited;
    // Node's cluster workers exit as soon as their IPC channel to the primary closes.
    // Exited: gone, or a zombie waiting for init to reap it.
    const running = (pid: number): boolean => alive(pid) && procState(pid).split(', ').some((t) => !/ [ZX]$/.test(t));
    while (pids.some(running) && Date.now() - t0 < 2000) await sleep(20);
    // A new primary takes longer than that to start and recover.
    assert.deepEqual(pids.filter(running), [], 'the orphaned workers exited within 2 s');
    console.log(`orphaned workers gone ${Date.now() - t0} ms after the primary's SIGKILL`);
    second = new Moonpost(s.configFile);
    await second.ready(s.port);
    assert.equal(second.workerPids().size, 2, second.tail());
  } finally {
    await teardown(s, first, second);
  }
});

test('workers: workerAccept primary deals connections to the workers in turn', { timeout: 60_000 }, async () => {
  const s = await setup({ workerAccept: 'primary' });
  const mp = new Moonpost(s.configFile);
  try {
    await mp.ready(s.port);
    const served: number[] = [];
    for (let i = 0; i < 6; i++) served.push((await noop(mp, s.port)).worker);
    // Round-robin: one after the other, never the same worker twice in a row.
    assert.deepEqual(served.slice(0, 2).sort(), [1, 2], JSON.stringify(served));
    for (let i = 2; i < served.length; i++) assert.equal(served[i], served[i - 2], JSON.stringify(served));
  } finally {
    await teardown(s, mp);
  }
});
