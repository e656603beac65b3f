import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventBus, Ring } from '../../src/admin/events.js';
import { LoginLimiter } from '../../src/admin/http/auth.js';
import { MinuteStats } from '../../src/admin/stats.js';
import { counts, matches, messageState, summary } from '../../src/admin/queue-view.js';
import { replySummary, scriptPosition } from '../../src/admin/live.js';
import { LATENCY_BUCKETS, ScriptMetrics } from '../../src/script/metrics.js';
import { validateConfig, ConfigError } from '../../src/config/load.js';
import type { Envelope } from '../../src/queue/envelope.js';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import { consoleRoutes } from '../../src/admin/http/console-assets.js';

test('Ring keeps the last items, oldest first', () => {
  const r = new Ring<number>(3);
  assert.deepEqual(r.toArray(), []);
  for (let i = 1; i <= 5; i++) r.push(i);
  assert.deepEqual(r.toArray(), [3, 4, 5]);
  assert.equal(r.size, 3);
});

test('EventBus: sequence numbers, bounded memory, errors kept apart, subscribers and watchers', () => {
  const bus = new EventBus(5, 2);
  const heard: number[] = [];
  const stop = bus.subscribe((e) => heard.push(e.seq));
  assert.equal(bus.watched, false);
  const unwatch = bus.subscribe(() => {
    throw new Error('a broken subscriber');
  }, true);
  assert.equal(bus.watched, true);
  for (let i = 0; i < 8; i++) bus.publish({ type: 'connect', session: `S${i}`, ip: '127.0.0.1', port: 1, service: 'smtp' });
  for (let i = 0; i < 3; i++) bus.publish({ type: 'script-error', script: 'SMTPSVR.LUA', line: i, hook: 'Start', kind: 'error', message: 'x' });
  assert.equal(bus.lastSeq, 11);
  assert.deepEqual(
    bus.recent().map((e) => e.seq),
    [7, 8, 9, 10, 11],
  );
  assert.deepEqual(
    bus.recent(9).map((e) => e.seq),
    [10, 11],
  );
  assert.deepEqual(
    bus.recent(0, new Set(['connect'])).map((e) => e.seq),
    [7, 8],
  );
  assert.deepEqual(
    bus.errors().map((e) => e.seq),
    [10, 11],
  );
  assert.equal(heard.length, 11);
  stop();
  unwatch();
  unwatch();
  assert.equal(bus.watched, false);
  bus.publish({ type: 'disconnect', session: 'S', ip: '', ms: 0 });
  assert.equal(heard.length, 11);
});

test('LoginLimiter: failures in a sliding window per address', () => {
  const l = new LoginLimiter(3, 60_000);
  const t0 = 1_000_000;
  for (let i = 0; i < 3; i++) {
    assert.equal(l.retryAfter('1.2.3.4', t0 + i * 1000), 0);
    l.fail('1.2.3.4', t0 + i * 1000);
  }
  assert.equal(l.retryAfter('1.2.3.4', t0 + 3000), 57);
  assert.equal(l.retryAfter('5.6.7.8', t0 + 3000), 0, 'other addresses are not affected');
  assert.equal(l.retryAfter('1.2.3.4', t0 + 60_001), 0, 'the first failure aged out');
  l.fail('1.2.3.4', t0 + 60_001);
  assert.ok(l.retryAfter('1.2.3.4', t0 + 60_002) > 0);
  l.succeed('1.2.3.4');
  assert.equal(l.retryAfter('1.2.3.4', t0 + 60_002), 0);
});

test('MinuteStats: messages in, deliveries out, refusals and queue depth per minute', () => {
  let now = Date.parse('2026-11-05T10:00:30Z');
  let delivered = 10;
  let depth = 4;
  const stats = new MinuteStats({ delivered: () => delivered, queueSize: () => depth }, () => now);
  const bus = new EventBus();
  stats.start(bus, 3_600_000);
  const msg = (outcome: string) => bus.publish({ type: 'message', session: 'S', queueId: 'Q', outcome, from: '', to: [], size: 1, reply: '250 ok' });
  msg('queued');
  msg('queued');
  msg('refused: size');
  bus.publish({ type: 'command', session: 'S', command: 'RCPT TO:<x@y>', reply: '554 5.7.1 Relay access denied' });
  bus.publish({ type: 'command', session: 'S', command: '(end of data)', reply: '552 5.3.4 too big' });
  bus.publish({ type: 'command', session: 'S', command: 'EHLO x', reply: '501 5.5.4 Syntax' });
  delivered = 13;
  now += 60_000;
  msg('queued');
  delivered = 14;
  depth = 2;
  const series = stats.series();
  stats.stop();
  assert.equal(series.length, 60);
  assert.deepEqual(series[58], { minute: '2026-11-05T10:00:00.000Z', in: 2, out: 0, refused: 2, queue: 4 });
  assert.deepEqual(series[59], { minute: '2026-11-05T10:01:00.000Z', in: 1, out: 4, refused: 0, queue: 2 });
  assert.deepEqual(series[0], { minute: '2026-11-05T09:02:00.000Z', in: 0, out: 0, refused: 0, queue: null });
});

function env(over: Partial<Envelope> = {}): Envelope {
  return {
    id: 'Q1',
    sender: 'alice@example.com',
    recipients: [
      { address: 'bob@remote.example', route: { kind: 'remote' }, state: 'pending' },
      { address: 'carol@Other.example', route: { kind: 'remote' }, state: 'pending' },
      { address: 'dan@localhost', route: { kind: 'local', mailbox: 'localhost/dan' }, state: 'delivered' },
    ],
    received: new Date(Date.now() - 120_000).toISOString(),
    headerOffset: 10,
    size: 100,
    client: { ip: '127.0.0.1', helo: 'x' },
    service: { id: 0, name: 'smtp' },
    ...over,
  };
}

test('queue view: state, filters, summary and counts', () => {
  const e = env();
  assert.equal(messageState(e), 'queued');
  assert.equal(messageState({ ...e, hold: true }), 'held');
  const deferred = env({ id: 'Q2' });
  deferred.recipients[0].attempts = 2;
  deferred.recipients[0].lastError = '451 later';
  assert.equal(messageState(deferred), 'deferred');
  assert.ok(matches(e, { sender: 'ALICE' }));
  assert.ok(!matches(e, { sender: 'bob' }));
  assert.ok(matches(e, { recipient: 'carol@other' }));
  assert.ok(matches(e, { domain: 'other.example' }));
  assert.ok(matches(e, { domain: '@remote.example' }));
  assert.ok(!matches(e, { domain: 'localhost' }), 'a delivered recipient is not waiting for its domain');
  assert.ok(matches(e, { minAge: 60, maxAge: 300 }));
  assert.ok(!matches(e, { minAge: 300 }));
  assert.ok(!matches(e, { state: 'held' }));
  const s = summary(deferred);
  assert.equal(s.recipients[0].lastReply, '451 later');
  assert.equal(s.recipients[2].route, 'local localhost/dan');
  assert.ok(s.ageSeconds >= 119);
  assert.deepEqual(counts([e, deferred, env({ id: 'Q3', hold: true, recipients: [{ address: 'x@other.example', route: { kind: 'remote' }, state: 'pending' }] })]), {
    messages: 3,
    byState: { held: 1, deferred: 1, queued: 1 },
    byDomain: [
      { domain: 'other.example', recipients: 3, messages: 3 },
      { domain: 'remote.example', recipients: 2, messages: 2 },
    ],
  });
});

test('live helpers: script position from Lua messages, reply summaries', () => {
  assert.deepEqual(scriptPosition('SMTPSVR.LUA:12: attempt to index a nil value'), { script: 'SMTPSVR.LUA', line: 12 });
  assert.deepEqual(scriptPosition('script stopped: time budget exceeded\nstack traceback:\n\thelper.lua:3: in function <helper.lua:1>'), { script: 'helper.lua', line: 3 });
  assert.deepEqual(scriptPosition('no main chunk'), { script: null, line: null });
  assert.equal(replySummary({ code: 250, enhanced: '2.1.0', lines: ['Ok'] }), '250 2.1.0 Ok');
  assert.equal(replySummary({ code: 250, lines: ['mx Hello', 'PIPELINING', 'SIZE 10'] }), '250 mx Hello (+2 lines)');
});

test('ScriptMetrics: a latency histogram per hook and failure listeners', () => {
  const m = new ScriptMetrics();
  const failures: string[] = [];
  m.onFailure((f) => failures.push(`${f.hook} ${f.kind} ${f.message}`));
  m.record('Start', 'ok', 0.05);
  m.record('Start', 'ok', 3);
  m.record('Start', 'error', 7000, 'SMTPSVR.LUA:1: boom');
  m.record('Start', 'absent', 1);
  m.record('Start', 'stopped', 1000, 'script stopped: time budget exceeded');
  const h = m.histogram('Start');
  assert.equal(h.length, LATENCY_BUCKETS.length + 1);
  assert.equal(h[LATENCY_BUCKETS.indexOf(0.0001)], 1, '0.05 ms');
  assert.equal(h[LATENCY_BUCKETS.indexOf(0.005)], 1, '3 ms');
  assert.equal(h[LATENCY_BUCKETS.indexOf(1)], 1, 'exactly 1 s is in the le=1 bucket');
  assert.equal(h[LATENCY_BUCKETS.length], 1, 'over 5 s');
  assert.equal(m.snapshot().Start.calls, 4);
  assert.deepEqual(failures, ['Start error SMTPSVR.LUA:1: boom', 'Start stopped script stopped: time budget exceeded']);
  assert.deepEqual(m.histogram('Nothing'), new Array(LATENCY_BUCKETS.length + 1).fill(0));
});

test('config: the admin section is optional, needs a login, hashed passwords and long tokens', () => {
  const base = { services: [{ id: 0, name: 'smtp', listen: '127.0.0.1', port: 0 }] };
  const hash = '$scrypt$N=16384,r=8,p=1$c29tZXNhbHRzb21lc2FsdA==$2Sj5W6Mhj9S2oGFH5hcfxA3/GhkZZ3b0qBL5SBJxfgI=';
  assert.equal(validateConfig(base, 't').admin, undefined);
  const ok = validateConfig({ ...base, admin: { tokens: [{ name: 'ci', token: 'x'.repeat(16) }], tls: { cert: 'c.pem', key: 'k.pem' } } }, 't', '/etc/moonpost');
  assert.equal(ok.admin!.enabled, true);
  assert.equal(ok.admin!.listen, '127.0.0.1');
  assert.equal(ok.admin!.port, 8025);
  assert.equal(ok.admin!.tls!.cert, '/etc/moonpost/c.pem');
  assert.equal(ok.admin!.login.attempts, 5);
  assert.equal(validateConfig({ ...base, admin: { enabled: false } }, 't').admin!.enabled, false);
  const bad: [unknown, RegExp][] = [
    [{}, /admin: needs at least one entry in "users" or "tokens"/],
    [{ users: [{ name: 'a', password: 'plain' }] }, /admin\.users\[0\]\.password: expected an scrypt hash/],
    [{ users: [{ name: 'a', password: hash }, { name: 'a', password: hash }] }, /duplicate user "a"/],
    [{ tokens: [{ name: 'ci', token: 'short' }] }, /admin\.tokens\[0\]\.token: expected at least 16 characters/],
    [{ tokens: [{ name: 'ci', token: { env: 'MOONPOST_TEST_UNSET_TOKEN' } }] }, /MOONPOST_TEST_UNSET_TOKEN is not set/],
    [{ users: [{ name: 'a', password: hash }], listen: 'localhost' }, /admin\.listen: expected an IP address/],
    [{ users: [{ name: 'a', password: hash }], colour: 'red' }, /unknown key\(s\) "colour"/],
  ];
  for (const [admin, message] of bad) {
    assert.throws(() => validateConfig({ ...base, admin }, 't'), (err: Error) => err instanceof ConfigError && message.test(err.message), JSON.stringify(admin));
  }
});

test('console assets: index and assets with types and ETags; nothing outside assets/; 503 until built', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moonpost-console-'));
  const app = Fastify();
  consoleRoutes(app, dir);
  try {
    const missing = await app.inject({ url: '/' });
    assert.equal(missing.statusCode, 503);
    assert.match(missing.body, /npm run build/);
    await mkdir(join(dir, 'assets'));
    await writeFile(join(dir, 'index.html'), '<!doctype html><title>t</title>');
    await writeFile(join(dir, 'assets', 'app.js'), 'console.log(1)');
    await writeFile(join(dir, 'assets', 'style.css'), 'body{}');
    await writeFile(join(dir, 'secret.txt'), 'not served');
    const index = await app.inject({ url: '/' });
    assert.equal(index.statusCode, 200);
    assert.equal(index.body, '<!doctype html><title>t</title>');
    assert.match(index.headers['content-type'] as string, /^text\/html/);
    assert.equal(index.headers['cache-control'], 'no-cache');
    assert.match(index.headers['content-security-policy'] as string, /script-src 'self'/);
    assert.equal((await app.inject({ url: '/index.html' })).statusCode, 302);
    const js = await app.inject({ url: '/assets/app.js' });
    assert.equal(js.statusCode, 200);
    assert.match(js.headers['content-type'] as string, /^text\/javascript/);
    assert.match((await app.inject({ url: '/assets/style.css' })).headers['content-type'] as string, /^text\/css/);
    const etag = js.headers.etag as string;
    assert.equal((await app.inject({ url: '/assets/app.js', headers: { 'if-none-match': etag } })).statusCode, 304);
    // A rebuild is served at once (read per request), with a new ETag.
    await writeFile(join(dir, 'assets', 'app.js'), 'console.log(2)');
    const again = await app.inject({ url: '/assets/app.js', headers: { 'if-none-match': etag } });
    assert.equal(again.statusCode, 200);
    assert.equal(again.body, 'console.log(2)');
    for (const url of ['/assets/..%2fsecret.txt', '/assets/%2e%2e%2fsecret.txt', '/assets/.app.js', '/assets/none.js', '/secret.txt']) {
      assert.equal((await app.inject({ url })).statusCode, 404, url);
    }
  } finally {
    await app.close();
    await rm(dir, { recursive: true, force: true });
  }
});
