import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { verifyPassword } from '../../src/policy/password.js';
import { openSession, sendMail, message } from '../helpers/smtp-client.js';

const run = promisify(execFile);
const CLI = resolve('dist/cli.js');

async function fails(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stderr: string }> {
  return run('node', [CLI, ...args], { env: { ...process.env, ...env } }).then(
    () => ({ code: 0, stderr: '' }),
    (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
  );
}

test('every subcommand has --help', async () => {
  for (const args of [['--help'], ['serve', '--help'], ['hash-password', '--help'], ['queue', '--help'], ['queue', 'list', '--help'], ['script', '--help'], ['script', 'try', '--help']]) {
    const { stdout } = await run('node', [CLI, ...args]);
    assert.match(stdout, /^Usage: moonpost/, args.join(' '));
  }
});

test('hash-password reads stdin and prints a verifiable scrypt hash', async () => {
  const child = spawn('node', [CLI, 'hash-password']);
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  child.stdin.end('correct horse\n');
  await new Promise((r) => child.on('close', r));
  const hash = out.trim();
  assert.match(hash, /^\$scrypt\$N=16384,r=8,p=1\$/);
  assert.ok(await verifyPassword('correct horse', hash));
  assert.ok(!(await verifyPassword('wrong', hash)));
});

test('a bad configuration stops the server with the file, the key path and what was expected', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moonpost-cfg-'));
  try {
    const cases: [string, RegExp][] = [
      ['services:\n  - { id: 0, name: a, listen: 127.0.0.1, port: 1, colour: red }\n', /services\[0\]: unknown key\(s\) "colour"/],
      ['services:\n  - { id: 0, name: a, listen: 127.0.0.1, port: "x" }\n', /services\[0\]\.port: .*expected number/i],
      ['services:\n  - { id: 0, name: a, listen: nowhere, port: 1 }\n', /services\[0\]\.listen: expected an IP address/],
      ['services:\n  - { id: 0, name: a, listen: 127.0.0.1, port: 1 }\nrelay: { networks: [10.0.0.0/33] }\n', /relay\.networks\[0\]: expected an IP network/],
      ['services:\n  - { id: 0, name: a, listen: 127.0.0.1, port: 1 }\nusers:\n  - { name: u, password: { env: MOONPOST_NO_SUCH_VAR } }\n', /users\[0\]\.password: environment variable MOONPOST_NO_SUCH_VAR is not set/],
      ['services: [\n', /YAML syntax/],
    ];
    for (const [i, [yaml, re]] of cases.entries()) {
      const file = join(dir, `bad${i}.yaml`);
      await writeFile(file, yaml);
      const r = await fails(['serve', '--config', file]);
      assert.equal(r.code, 2, yaml);
      assert.ok(r.stderr.includes(file), r.stderr);
      assert.match(r.stderr, re);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('serve with no config runs the embedded defaults: 127.0.0.1:2525, ./var, localhost catch-all; queue list; SIGTERM', async () => {
  const cwd = await mkdtemp(join(tmpdir(), 'moonpost-defaults-'));
  const child = spawn('node', [CLI, 'serve'], { cwd, env: { ...process.env, MOONPOST_LOG: 'warn', MOONPOST_DATA: '' } });
  try {
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d));
    const deadline = Date.now() + 10000;
    while (!err.includes('Maildir') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.match(err, /listening on 127\.0\.0\.1:2525/);
    assert.ok(err.includes(join(cwd, 'var', 'mail')), err);
    const c = await openSession(2525);
    assert.equal((await sendMail(c, 'a@example.com', ['anyone@localhost'], message('defaults'))).code, 250);
    assert.equal((await sendMail(c, 'a@example.com', ['far@remote.test'], message('queued'))).code, 250);
    await c.cmd('QUIT');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await readdir(join(cwd, 'var', 'mail', 'localhost', 'anyone', 'new'))).length, 1);
    const { stdout } = await run('node', [CLI, 'queue', 'list'], { cwd, env: { ...process.env, MOONPOST_DATA: '' } });
    assert.match(stdout, /<a@example\.com>\n\s+pending\s+<far@remote\.test> \(relay\)\n1 message\(s\)\n$/);
    child.kill('SIGTERM');
    const code = await new Promise((r) => child.on('exit', r));
    assert.equal(code, 0);
  } finally {
    child.kill('SIGKILL');
    await rm(cwd, { recursive: true, force: true });
  }
});
