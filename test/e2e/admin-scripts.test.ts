import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startScriptServer, type ScriptHarness } from '../helpers/script-server.js';
import { AdminClient, adminSection, ADMIN_TOKEN } from '../helpers/admin-client.js';
import { openSession, TestClient } from '../helpers/smtp-client.js';

// The admin API's scripts: list, read, check, save (live for the next connection), history, try.

const V1 = `-- version 1
function DoMAILFROM(data, mailfrom, params, spf, authSender)
  return params, ""
end
`;
const V2 = `-- version 2
function DoMAILFROM(data, mailfrom, params, spf, authSender)
  print("checking " .. mailfrom)
  if mailfrom:match("@spam%.example$") then return params, "550 5.7.1 Go away" end
  return params, ""
end
`;

let h: ScriptHarness;
let api: AdminClient;
let scriptsDir: string;

before(async () => {
  h = await startScriptServer(V1, { admin: await adminSection() }, { 'helper.lua': 'return { greet = function() return "hi" end }\n' });
  api = AdminClient.forPort(h.adminPort!);
  assert.equal((await api.login()).status, 200);
  scriptsDir = join(h.dataDir, 'scripts');
});
after(() => h.stop());

const mailFrom = async (c: TestClient, from: string): Promise<number> => (await c.cmd(`MAIL FROM:<${from}>`)).code;

test('list: the main scripts first, then modules, with the live version', async () => {
  const r = await api.get('/api/scripts');
  assert.equal(r.status, 200);
  assert.equal(r.body.dir, scriptsDir);
  assert.deepEqual(
    r.body.scripts.map((s: { name: string; kind: string }) => [s.name, s.kind]),
    [
      ['SMTPSVR.LUA', 'smtpsvr'],
      ['helper.lua', 'module'],
    ],
  );
  const main = r.body.scripts[0];
  assert.equal(main.size, Buffer.byteLength(V1));
  assert.equal(main.live.current, true);
  assert.ok(main.live.version >= 1);
  assert.equal(r.body.scripts[1].live, undefined);
});

test('read: source and live state; names match case-insensitively; bad names are 400, missing 404', async () => {
  const r = await api.get('/api/scripts/smtpsvr.lua');
  assert.equal(r.status, 200);
  assert.equal(r.body.name, 'SMTPSVR.LUA');
  assert.equal(r.body.source, V1);
  assert.equal(r.body.encoding, 'utf8');
  assert.equal(r.body.kind, 'smtpsvr');
  assert.equal(r.body.live.current, true);
  assert.equal((await api.get('/api/scripts/missing.lua')).status, 404);
  for (const bad of ['notes.txt', '.hidden.lua', '..%2Fconfig.lua', 'a%2Fb.lua']) {
    assert.equal((await api.get(`/api/scripts/${bad}`)).status, 400, bad);
  }
});

test('check: OK, or the syntax error with its line from the Lua compiler', async () => {
  assert.deepEqual((await api.post('/api/scripts/SMTPSVR.LUA/check', { source: V2 })).body, { ok: true });
  const r = await api.post('/api/scripts/SMTPSVR.LUA/check', { source: 'function Start()\n  local x = 1\n  if x then\nend\n' });
  assert.equal(r.status, 200);
  assert.equal(r.body.ok, false);
  assert.equal(r.body.line, 5);
  assert.match(r.body.error, /^SMTPSVR\.LUA:5: /);
  assert.match(r.body.message, /'end' expected/);
  const r2 = await api.post('/api/scripts/helper.lua/check', { source: 'return {\n  a = = 1\n}' });
  assert.equal(r2.body.line, 2);
  assert.match(r2.body.error, /^helper\.lua:2: /);
});

test('save refuses a script that does not compile: 422 with the line; file and live version unchanged', async () => {
  const before = await api.get('/api/scripts/SMTPSVR.LUA');
  const r = await api.put('/api/scripts/SMTPSVR.LUA', { source: 'function DoMAILFROM(\n  return "550 no"\nend\n' });
  assert.equal(r.status, 422);
  assert.equal(r.body.line, 2);
  assert.match(r.body.error, /SMTPSVR\.LUA:2:/);
  assert.equal(await readFile(join(scriptsDir, 'SMTPSVR.LUA'), 'utf8'), V1);
  const after = await api.get('/api/scripts/SMTPSVR.LUA');
  assert.equal(after.body.live.version, before.body.live.version);
  assert.equal((await api.get('/api/scripts/SMTPSVR.LUA/history')).body.versions.length, 0, 'nothing archived');
});

test('save makes the script live for the next connection; a connection in flight keeps its version', async () => {
  const early = await openSession(h.port);
  const r = await api.put('/api/scripts/SMTPSVR.LUA', { source: V2 });
  assert.equal(r.status, 200);
  assert.equal(r.body.saved, true);
  assert.equal(r.body.name, 'SMTPSVR.LUA');
  assert.equal(r.body.live.current, true);
  assert.match(r.body.archived, /^\d{8}T\d{9}Z/);
  assert.equal(await readFile(join(scriptsDir, 'SMTPSVR.LUA'), 'utf8'), V2);

  const late = await openSession(h.port);
  assert.equal(await mailFrom(late, 'x@spam.example'), 550, 'the new connection runs version 2');
  late.close();
  assert.equal(await mailFrom(early, 'x@spam.example'), 250, 'the older connection still runs version 1');
  early.close();
  // Saving the same text again archives nothing.
  const same = await api.put('/api/scripts/SMTPSVR.LUA', { source: V2 });
  assert.equal(same.status, 200);
  assert.equal(same.body.archived, null);
});

test('history: earlier versions with a diff against the current one, and one-click restore', async () => {
  const list = await api.get('/api/scripts/SMTPSVR.LUA/history');
  assert.equal(list.status, 200);
  assert.equal(list.body.versions.length, 1);
  const [v1] = list.body.versions;
  assert.equal(v1.size, Buffer.byteLength(V1));
  assert.ok(Date.parse(v1.saved) <= Date.now());
  const files = await readdir(join(scriptsDir, '.history', 'smtpsvr.lua'));
  assert.deepEqual(files, [`${v1.id}.lua`]);

  const one = await api.get(`/api/scripts/SMTPSVR.LUA/history/${v1.id}`);
  assert.equal(one.status, 200);
  assert.equal(one.body.source, V1);
  assert.match(one.body.diff, /^--- SMTPSVR\.LUA@/m);
  assert.match(one.body.diff, /^\+\+\+ SMTPSVR\.LUA \(current\)/m);
  assert.match(one.body.diff, /^--- version 1$/m, 'the removed line');
  assert.match(one.body.diff, /^\+-- version 2$/m, 'the added line');
  assert.match(one.body.diff, /^\+\s+print\("checking " \.\. mailfrom\)$/m);
  assert.equal((await api.get('/api/scripts/SMTPSVR.LUA/history/20990101T000000000Z')).status, 404);
  assert.equal((await api.get('/api/scripts/SMTPSVR.LUA/history/not-an-id')).status, 400);

  const restored = await api.post(`/api/scripts/SMTPSVR.LUA/history/${v1.id}/restore`);
  assert.equal(restored.status, 200);
  assert.equal(restored.body.restored, v1.id);
  assert.equal(restored.body.live.current, true);
  assert.equal(await readFile(join(scriptsDir, 'SMTPSVR.LUA'), 'utf8'), V1);
  const c = await openSession(h.port);
  assert.equal(await mailFrom(c, 'x@spam.example'), 250, 'version 1 is live again');
  c.close();
  // The version it replaced (2) is in the history now, newest first; a diff between two versions.
  const after = (await api.get('/api/scripts/SMTPSVR.LUA/history')).body.versions;
  assert.equal(after.length, 2);
  assert.equal(after[1].id, v1.id);
  const v2 = after[0];
  assert.equal((await api.get(`/api/scripts/SMTPSVR.LUA/history/${v2.id}`)).body.source, V2);
  const between = await api.get(`/api/scripts/SMTPSVR.LUA/history/${v1.id}?against=${v2.id}`);
  assert.match(between.body.diff, /^\+\+\+ SMTPSVR\.LUA@/m);
  assert.match(between.body.diff, /^\+-- version 2$/m);
});

test('try: the transcript through the session and the script, every hook call and print line', async () => {
  await api.put('/api/scripts/SMTPSVR.LUA', { source: V2 });
  const r = await api.post('/api/scripts/SMTPSVR.LUA/try', {
    transcript: 'EHLO client.example\nMAIL FROM:<a@spam.example>\nMAIL FROM:<b@ok.example>\nQUIT\n',
  });
  assert.equal(r.status, 200);
  assert.deepEqual(r.body.hooks, [
    'DoMAILFROM("<a@spam.example>", "a@spam.example", {}, "", "") -> {}, "550 5.7.1 Go away"',
    'DoMAILFROM("<b@ok.example>", "b@ok.example", {}, "", "") -> {}, ""',
  ]);
  assert.deepEqual(r.body.prints, ['checking a@spam.example', 'checking b@ok.example']);
  assert.match(r.body.output, /^S: 550 5\.7\.1 Go away$/m);
  assert.match(r.body.output, /^S: 221 /m);
});

test('try: unsaved text (with require of a module beside it), a syntax error, a bad transcript', async () => {
  const source = `local helper = require("helper")
function DoHELO(host, refuse, ehlo)
  print(helper.greet() .. " " .. host)
end
`;
  const r = await api.post('/api/scripts/SMTPSVR.LUA/try', { source, transcript: 'HELO box\nQUIT\n', ip: '192.0.2.7' });
  assert.equal(r.status, 200);
  assert.deepEqual(r.body.prints, ['hi box']);
  assert.match(r.body.hooks[0], /^DoHELO\("box", false, false\)/);
  assert.match(r.body.output, /\[192\.0\.2\.7\]/);
  assert.equal(await readFile(join(scriptsDir, 'SMTPSVR.LUA'), 'utf8'), V2, 'try does not save');

  const bad = await api.post('/api/scripts/SMTPSVR.LUA/try', { source: 'function (\n', transcript: 'QUIT\n' });
  assert.equal(bad.status, 422);
  assert.equal(bad.body.line, 1);
  assert.match(bad.body.error, /^SMTPSVR\.LUA:1:/);

  const badTranscript = await api.post('/api/scripts/SMTPSVR.LUA/try', { transcript: 'EHLO x\nBDAT 100 LAST\nshort\n' });
  assert.equal(badTranscript.status, 400);
  assert.match(badTranscript.body.error, /^transcript: line 2: BDAT 100: the transcript ends/);
  assert.equal((await api.post('/api/scripts/SMTPSVR.LUA/try', { transcript: 'QUIT\n', ip: 'nowhere' })).status, 400);
  assert.equal((await api.post('/api/scripts/helper.lua/try', { transcript: 'QUIT\n' })).status, 400);
});

test('modules and relayout.lua: saved, listed, live for the next session or send run', async () => {
  const mod = await api.put('/api/scripts/rules.lua', { source: 'return { blocked = "@blocked%.example$" }\n' });
  assert.equal(mod.status, 200);
  assert.equal(mod.body.archived, null);
  assert.equal(mod.body.live, undefined);
  const main = await api.put('/api/scripts/SMTPSVR.LUA', {
    source: `local rules = require("rules")
function DoMAILFROM(data, mailfrom, params)
  if mailfrom:match(rules.blocked) then return params, "550 5.7.1 Blocked by rules" end
  return params, ""
end
`,
  });
  assert.equal(main.status, 200);
  const c = await openSession(h.port);
  const reply = await c.cmd('MAIL FROM:<x@blocked.example>');
  assert.equal(reply.code, 550);
  assert.match(reply.raw, /Blocked by rules/);
  c.close();

  const before = h.server.scripts.relayout?.version ?? 0;
  const relayout = await api.put('/api/scripts/relayout.lua', { source: 'function CheckFile() end\n' });
  assert.equal(relayout.status, 200);
  assert.equal(relayout.body.live.current, true);
  assert.equal(relayout.body.live.version, before + 1);
  assert.ok(h.server.scripts.relayout?.current, 'the relay gets it at its next send run');
  const names = (await api.get('/api/scripts')).body.scripts.map((s: { name: string }) => s.name);
  assert.deepEqual(names, ['SMTPSVR.LUA', 'relayout.lua', 'helper.lua', 'rules.lua']);
});

test('bytes that are not UTF-8 come back as latin1 and are saved byte for byte', async () => {
  const bytes = Buffer.from('-- caf\xe9\nreturn "\xe9"\n', 'latin1');
  await writeFile(join(scriptsDir, 'legacy.lua'), bytes);
  const r = await api.get('/api/scripts/legacy.lua');
  assert.equal(r.body.encoding, 'latin1');
  const saved = await api.put('/api/scripts/legacy.lua', { source: `${r.body.source}-- edited\n`, encoding: 'latin1' });
  assert.equal(saved.status, 200);
  assert.deepEqual(await readFile(join(scriptsDir, 'legacy.lua')), Buffer.concat([bytes, Buffer.from('-- edited\n')]));
  const t = AdminClient.forPort(h.adminPort!, ADMIN_TOKEN);
  const hist = (await t.get('/api/scripts/legacy.lua/history')).body.versions;
  assert.equal(hist.length, 1);
});
