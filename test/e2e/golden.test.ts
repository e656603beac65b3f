import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { loadConfig } from '../../src/config/load.js';
import { runTranscript, type TryOptions } from '../../src/script/script-try.js';

/**
 * Golden transcripts of `moonpost script try` (Postfix smtpd_check.in/.ref style): for every
 * test/golden/NAME.in, the output of running it with NAME.lua (or, for NAME-variant.in, with
 * NAME.lua) and test/golden/moonpost.yaml must equal NAME.ref exactly. Options for a case go on
 * a line "# args: --ip ADDR --tls --auth USER". UPDATE_GOLDEN=1 rewrites the .ref files; read
 * every changed one before committing it.
 */

const run = promisify(execFile);
const DIR = resolve('test/golden');
const CONFIG = join(DIR, 'moonpost.yaml');
const CLI = resolve('dist/cli.js');
const UPDATE = process.env.UPDATE_GOLDEN === '1';

/**
 * Cases whose .ref holds the behaviour the specification asks for, while the session does
 * something else. They run as "todo" (reported, not failing) and UPDATE_GOLDEN leaves them alone.
 */
const KNOWN_BUGS: Record<string, string> = {
};

const HOOKS = [
  'Start', 'GetMaxMessageSize', 'GetEHLOCapabilities', 'DoHELO', 'DoHELP', 'DoQUIT', 'DoNOOP', 'DoRSET', 'DoVRFY', 'DoEXPN',
  'DoMAILFROM', 'DoRCPTTO', 'DoDATAStart', 'DoUnrecognised', 'StartMessage', 'MessageLineRaw', 'MessageLine', 'EndMessage', 'End',
];

interface Case {
  name: string;
  script: string;
  input: string;
  ref: string;
  args: string[];
}

function cases(): Case[] {
  return readdirSync(DIR)
    .filter((f) => f.endsWith('.in'))
    .sort()
    .map((f) => {
      const name = f.slice(0, -3);
      const own = join(DIR, `${name}.lua`);
      return { name, script: existsSync(own) ? own : join(DIR, `${name.split('-')[0]}.lua`), input: join(DIR, f), ref: join(DIR, `${name}.ref`), args: [] };
    });
}

/** The "# args:" line of a transcript, as CLI arguments and as module options. */
async function withArgs(c: Case): Promise<{ c: Case; transcript: Buffer; opts: Partial<TryOptions> }> {
  const transcript = await readFile(c.input);
  const m = /^# args:(.*)$/m.exec(transcript.toString('utf8'));
  const args = m ? m[1].trim().split(/\s+/) : [];
  const opts: Partial<TryOptions> = {};
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--ip') opts.ip = args[++i];
    else if (args[i] === '--auth') opts.authUser = args[++i];
    else if (args[i] === '--tls') opts.tls = true;
    else throw new Error(`${c.input}: unknown option ${args[i]}`);
  }
  return { c: { ...c, args }, transcript, opts };
}

for (const c0 of cases()) {
  test(`golden transcript ${c0.name}`, { todo: KNOWN_BUGS[c0.name] }, async () => {
    const { c, transcript, opts } = await withArgs(c0);
    const out = await runTranscript({ script: c.script, transcript, config: loadConfig(CONFIG), ...opts });
    if (UPDATE && !KNOWN_BUGS[c.name]) {
      await writeFile(c.ref, out);
      return;
    }
    assert.equal(out, await readFile(c.ref, 'utf8'), `${c.ref} differs (UPDATE_GOLDEN=1 rewrites it)`);
  });
}

test('the golden transcripts call every SMTPSVR.LUA hook of the issue at least once', async () => {
  const called = new Set<string>();
  for (const c of cases()) {
    if (!existsSync(c.ref)) continue;
    for (const m of (await readFile(c.ref, 'utf8')).matchAll(/^H: (\w+)\(/gm)) called.add(m[1]);
  }
  const missing = HOOKS.filter((h) => !called.has(h));
  assert.deepEqual(missing, [], `hooks never called in any .ref: ${missing.join(', ')}`);
});

test('the CLI prints the same transcript: moonpost script try SCRIPT --transcript FILE', async () => {
  const { c } = await withArgs(cases().find((x) => x.name === 'DoRCPTTO')!);
  const { stdout } = await run('node', [CLI, 'script', 'try', c.script, '--transcript', c.input, '--config', CONFIG, ...c.args]);
  assert.equal(stdout, await readFile(c.ref, 'utf8'));
});

test('script try: a syntax error exits 1 with FILE:LINE, a bad transcript exits 2', async () => {
  const fails = (args: string[]) =>
    run('node', [CLI, 'script', 'try', ...args]).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
  const tmp = await mkdtemp(join(tmpdir(), 'moonpost-golden-'));
  try {
    await writeFile(join(tmp, 'bad.lua'), 'function Start(\n');
    let r = await fails([join(tmp, 'bad.lua'), '--transcript', join(DIR, 'End.in')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /bad\.lua:2:/);
    await writeFile(join(tmp, 'short.in'), 'EHLO x\nBDAT 100 LAST\nonly a few octets\n');
    r = await fails([join(DIR, 'End.lua'), '--transcript', join(tmp, 'short.in')]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /short\.in: line 2: BDAT 100: the transcript ends after 19 octets/);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
});
