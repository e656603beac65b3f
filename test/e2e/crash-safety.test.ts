import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startServer } from '../helpers/harness.js';
import { CLI, LoadGenerator, ServerProcess, census, freePort, prng, tally } from '../helpers/crash-load.js';

const run = promisify(execFile);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// Q1 under fire: the real server (dist/cli.js) is SIGKILLed at random moments while several
// connections send to it, restarted on the same port and data folder, again and again; then
// the queue is let drain. Every message that got its 250 must be in every recipient's Maildir,
// locally or behind the relay (a second moonpost as the smarthost), at least once.
// MOONPOST_CRASH_SEED repeats a run's kill schedule and load (not its timing); MOONPOST_CRASH_KILLS changes how many kills.
const KILLS = Number(process.env.MOONPOST_CRASH_KILLS ?? 22);
const SEED = Number(process.env.MOONPOST_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
const LOCAL = 'localhost';
const REWRITE_SCRIPT = `function ProcessMessage(mailfrom, subject, recipients, actions, structure, size, attachments)
  actions.HeaderModifiers = { "X-Crash-Size: " .. size }
  return actions
end
`;
const REMOTE = 'remote.test';

test(`crash safety: ${KILLS} SIGKILLs under load, no acknowledged message lost (seed ${SEED})`, { timeout: 60_000 + KILLS * 5_000 }, () => crashRun(0));

// With `workers: 2` a kill of the primary takes its workers with it; every other kill here takes
// one worker only, whose committed messages the primary then finds by its rescan.
test(`crash safety, workers: 2: ${KILLS} SIGKILLs, half of them of one worker (seed ${SEED})`, { timeout: 60_000 + KILLS * 5_000 }, () => crashRun(2));

async function crashRun(workers: number): Promise<void> {
  // The kill schedule and the load draw from separate streams of the seed.
  const random = prng(SEED);
  const between = (lo: number, hi: number): number => lo + Math.floor(random() * (hi - lo));
  const dir = await mkdtemp(join(tmpdir(), 'moonpost-crash-'));
  const sink = await startServer({ hostname: 'sink.test', domains: [{ name: REMOTE, catchAll: true }], queue: { fsync: false } });
  const port = await freePort();
  const configFile = join(dir, 'moonpost.yaml');
  const dataDir = join(dir, 'data');
  // JSON is YAML.
  const config = {
    hostname: 'crash.test',
    dataDir,
    services: [{ id: 0, name: 'smtp', listen: '127.0.0.1', port }],
    domains: [{ name: LOCAL, catchAll: true }],
    relay: { networks: ['127.0.0.1/32'], mode: 'ip' },
    senders: [{ id: 0, name: 'sink', mode: 'smarthost', host: '127.0.0.1', port: sink.port, tls: 'none' }],
    // A deferral (none is expected) is retried within the test's time.
    delivery: { runIntervalSeconds: 1, retry: { firstRetry: 1, maxInterval: 2 } },
    limits: { timeouts: { shutdown: 5 } },
    log: { level: 'warn' },
    scripts: { dir: join(dir, 'scripts') },
    ...(workers ? { workers } : {}),
  };
  // Every message gets a header from ProcessMessage: the stored file is rewritten in place
  // before the 250 (header-rewrite.ts), so kills land in rewrites too, and a copy without the
  // header, or damaged by a rewrite, counts as damaged.
  await mkdir(join(dir, 'scripts'));
  await writeFile(join(dir, 'scripts', 'SMTPSVR.LUA'), REWRITE_SCRIPT);
  await writeFile(configFile, JSON.stringify(config, null, 2));
  const server = new ServerProcess(configFile, port);
  const tag = SEED.toString(36);
  const load = new LoadGenerator({
    port,
    connections: 6,
    maxMessages: 20_000,
    tag,
    random: prng(SEED ^ 0x5bd1e995),
    localDomain: LOCAL,
    remoteDomain: REMOTE,
  });
  const t0 = Date.now();
  let kills = 0;
  let recoveryKills = 0;
  let workerKills = 0;
  try {
    await server.start();
    load.start();
    for (let k = 0; k < KILLS; k++) {
      await sleep(between(50, 400));
      // With workers, every other kill takes one worker: the primary rescans what it left.
      if (workers && k % 2 === 1) {
        if (await server.killWorker((n) => between(0, n))) workerKills++;
        continue;
      }
      await server.kill();
      kills++;
      // Now and then a second crash while the server starts and recovers its queue.
      if (random() < 0.2) {
        await server.start(false);
        await sleep(between(0, 500));
        await server.kill();
        recoveryKills++;
      }
      await server.start();
    }
    const loadMs = Date.now() - t0;
    await sleep(300);
    await load.stop();

    // Let the queue drain, asking the running server the way an administrator would.
    const deadline = Date.now() + 40_000;
    let queued: unknown[] = [];
    for (;;) {
      // The files first (cheap); once no envelope is left, the server's own answer.
      const envs = (await readdir(join(dataDir, 'queue'))).filter((f) => f.endsWith('.env'));
      if (!envs.length || Date.now() > deadline) {
        const { stdout } = await run(process.execPath, [CLI, 'queue', 'list', '--json', '--config', configFile]);
        queued = JSON.parse(stdout) as unknown[];
        if (!queued.length || Date.now() > deadline) break;
      }
      await sleep(100);
    }
    const undrained = queued.length ? `the queue did not drain: ${queued.length} message(s), first ${JSON.stringify(queued[0])}` : '';
    const stopCode = await server.stop();
    // The sink's own local delivery of what it accepted (anything else, e.g. a bounce for a
    // remote sender, would wait in its queue: the census reports it missing or foreign).
    for (const until = Date.now() + 10_000; sink.server.queue.list().some((e) => e.recipients.some((r) => r.state === 'pending' && r.route.kind === 'local')) && Date.now() < until; ) await sleep(50);
    await sink.settle();

    const leftovers = await readdir(join(dataDir, 'queue'));
    const found = await census(
      tag,
      [
        { mailRoot: join(dataDir, 'mail'), domain: LOCAL },
        { mailRoot: join(sink.dataDir, 'mail'), domain: REMOTE },
      ],
      /^X-Crash-Size: \d+\r$/m,
    );
    const n = tally(load.sent, found, REMOTE);
    const summary =
      `crash safety (seed ${SEED}): ${kills} kills (+${recoveryKills} during recovery${workers ? `, +${workerKills} of one worker; workers: ${workers}` : ''}), ${server.starts} starts, load ${loadMs} ms, total ${Date.now() - t0} ms; ` +
      `attempted ${n.attempted}, acknowledged ${n.acknowledged}, delivered ${n.delivered}, duplicated ${n.duplicated} (local ${n.duplicatedLocal}), lost ${n.lost}; ` +
      `relayed ${n.relayed}, refused ${n.refused}, unacknowledged ${n.unacknowledged} (delivered anyway ${n.unacknowledgedDelivered}), ` +
      `misdelivered ${n.misdelivered}, damaged ${n.damaged}, foreign ${n.foreign}, queue leftovers ${leftovers.length}; ` +
      `connections ${load.connects}, refused connects ${load.connectFailures}, dropped ${load.dropped}`;
    console.log(summary);
    const detail = `${summary}\n${undrained}\n${[...n.lostExamples, ...found.damaged.slice(0, 5), ...found.foreign.slice(0, 5), ...leftovers.slice(0, 5)].join('\n')}\n${server.stderrTail}`;

    assert.equal(n.lost, 0, `acknowledged messages lost: ${detail}`);
    assert.equal(n.delivered, n.acknowledged, detail);
    // A message has one name in a Maildir: a delivery repeated after a kill makes no second copy.
    assert.equal(n.duplicatedLocal, 0, `local mailboxes with a message twice: ${detail}`);
    assert.ok(kills + workerKills >= 20, `at least 20 kills: ${summary}`);
    assert.ok(n.acknowledged >= 100, `enough load to mean something: ${detail}`);
    assert.ok(n.relayed >= 10, `the relay path was exercised: ${detail}`);
    assert.equal(undrained, '', detail);
    assert.equal(stopCode, 0, `graceful stop after the drain: ${detail}`);
    assert.equal(n.misdelivered, 0, `copies in mailboxes they were not addressed to: ${detail}`);
    assert.equal(n.damaged, 0, `truncated or damaged copies: ${detail}`);
    assert.equal(n.foreign, 0, `unexpected files (bounces?) in the mailboxes: ${detail}`);
    assert.deepEqual(leftovers, [], `files left in the queue after it drained: ${detail}`);
  } finally {
    await load.stop();
    await server.kill();
    await sink.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
