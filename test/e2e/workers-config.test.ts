import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, validateConfig } from '../../src/config/load.js';
import { CLI, freePort } from '../helpers/crash-load.js';
import { TestClient } from '../helpers/smtp-client.js';

const base = { services: [{ id: 0, name: 'smtp', listen: '127.0.0.1', port: 0 }] };

test('workers: a number from 1, or "auto"; 1 by default', () => {
  assert.equal(validateConfig(base, 't').workers, 1);
  assert.equal(validateConfig({ ...base, workers: 4 }, 't').workers, 4);
  assert.equal(validateConfig({ ...base, workers: 'auto' }, 't').workers, 'auto');
  for (const bad of [0, -1, 1.5, 'two', '2']) {
    assert.throws(() => validateConfig({ ...base, workers: bad }, 't'), (e: unknown) => e instanceof ConfigError && /workers/.test(e.message), `workers: ${JSON.stringify(bad)}`);
  }
});

test('workerAccept: kernel by default, or primary', () => {
  assert.equal(validateConfig(base, 't').workerAccept, 'kernel');
  assert.equal(validateConfig({ ...base, workerAccept: 'primary' }, 't').workerAccept, 'primary');
  assert.throws(() => validateConfig({ ...base, workerAccept: 'roundrobin' }, 't'), (e: unknown) => e instanceof ConfigError && /workerAccept/.test(e.message));
});

/** Pids of the children of a process (Linux). */
function children(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).flatMap((t) => {
    const text = readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim();
    return text ? text.split(/\s+/).map(Number) : [];
  });
}

test('workers: 1 is one process: no children, no worker in the logs, mail accepted', { timeout: 60_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moonpost-workers1-'));
  const port = await freePort();
  const configFile = join(dir, 'moonpost.yaml');
  await writeFile(configFile, JSON.stringify({ ...base, services: [{ ...base.services[0], port }], dataDir: join(dir, 'data'), domains: ['localhost'], users: [], workers: 1, log: { level: 'info' } }));
  const child = spawn(process.execPath, [CLI, 'serve', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((res) => child.once('close', (code) => res(code)));
  try {
    for (const until = Date.now() + 30_000; !err.includes(`listening on 127.0.0.1:${port}`); ) {
      if (Date.now() > until || child.exitCode !== null) throw new Error(`did not start: ${err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const c = await TestClient.connect(port);
    assert.equal((await c.read()).code, 220);
    assert.equal((await c.cmd('EHLO client.test')).code, 250);
    c.close();
    assert.deepEqual(children(child.pid!), [], 'no worker processes');
    assert.doesNotMatch(err, /worker processes/);
    await new Promise((r) => setTimeout(r, 100));
    const lines = out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.ok(lines.some((l) => l.msg === 'connected'));
    assert.ok(lines.every((l) => l.worker === undefined && l.role === undefined), 'the single process logs as before');
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  } finally {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
});
