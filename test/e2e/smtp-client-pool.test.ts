import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClientPool } from '../../src/delivery/client-pool.js';
import { SmtpClient } from '../../src/delivery/smtp-client.js';
import { startScriptedServer, type ScriptedServer, type ScriptedServerOptions } from '../helpers/scripted-smtp-server.js';
import { text } from '../helpers/client-fixtures.js';

const MSG = 'Subject: pool\r\n\r\nbody\r\n';
const tx = (to: string) => ({ from: 'a@example.com', recipients: [{ address: to }], size: MSG.length, data: text(MSG) });
const opener = (srv: ScriptedServer, counter?: { open: number; max: number; live: number }) => async () => {
  if (counter) {
    counter.open++;
    counter.live++;
    counter.max = Math.max(counter.max, counter.live);
  }
  const c = await SmtpClient.connect({ host: '127.0.0.1', port: srv.port, tls: 'none', rejectUnauthorized: false, helo: 'pool.test' });
  if (counter) c.onClose(() => counter.live--);
  return c;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function withServer(opts: ScriptedServerOptions, fn: (srv: ScriptedServer) => Promise<void>): Promise<void> {
  const srv = await startScriptedServer(opts);
  try {
    await fn(srv);
  } finally {
    await srv.close();
  }
}

test('at most N connections per destination; waiting transactions reuse them after RSET', () =>
  withServer({ respond: (c) => (c === '.' ? { reply: '250 2.0.0 queued', delayMs: 40 } : undefined) }, async (srv) => {
    const pool = new ClientPool({ maxPerDestination: 2 });
    const counter = { open: 0, max: 0, live: 0 };
    const reused: boolean[] = [];
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        (async () => {
          const lease = await pool.acquire('mx.test', opener(srv, counter));
          reused.push(lease.reused);
          try {
            return await lease.client.send(tx(`r${i}@example.com`));
          } finally {
            lease.release();
          }
        })(),
      ),
    );
    assert.deepEqual(results.map((r) => r.perRecipient[0].code), [250, 250, 250, 250, 250, 250]);
    assert.equal(counter.open, 2);
    assert.equal(counter.max, 2);
    assert.equal(reused.filter(Boolean).length, 4);
    assert.equal(srv.sessions.length, 2);
    assert.equal(srv.sessions.reduce((n, s) => n + s.messages.length, 0), 6);
    for (const s of srv.sessions) {
      const verbs = s.commands.map((c) => c.split(/[ :]/)[0]);
      // Every MAIL after the first on a connection follows an RSET.
      verbs.forEach((v, i) => {
        if (v === 'MAIL' && verbs.indexOf('MAIL') !== i) assert.equal(verbs[i - 1], 'RSET');
      });
    }
    assert.deepEqual(pool.stats('mx.test'), { active: 0, idle: 2, waiting: 0 });
    await pool.close();
    await srv.closedSessions(2);
    assert.ok(srv.sessions.every((s) => s.commands.at(-1) === 'QUIT'));
  }));

test('an idle connection is closed with QUIT after the idle timeout', () =>
  withServer({}, async (srv) => {
    const pool = new ClientPool({ maxPerDestination: 1, idleTimeoutMs: 100 });
    await pool.use('d', opener(srv), (c) => c.send(tx('b@example.com')));
    assert.equal(pool.stats('d').idle, 1);
    await srv.closedSessions(1, 2000);
    assert.equal(srv.sessions[0].commands.at(-1), 'QUIT');
    assert.deepEqual(pool.stats('d'), { active: 0, idle: 0, waiting: 0 });
    await pool.close();
  }));

test('a connection the server closed while idle is not reused', () =>
  withServer({ respond: (c) => (c === '.' ? { reply: '250 2.0.0 queued, bye', close: true } : undefined) }, async (srv) => {
    const pool = new ClientPool({ maxPerDestination: 1 });
    const counter = { open: 0, max: 0, live: 0 };
    for (let i = 0; i < 3; i++) {
      const r = await pool.use('d', opener(srv, counter), (c) => c.send(tx('b@example.com')));
      assert.equal(r.perRecipient[0].code, 250);
      await sleep(20);
    }
    assert.equal(counter.open, 3);
    await pool.close();
  }));

test('destinations are limited separately', async () => {
  const opts: ScriptedServerOptions = { respond: (c) => (c === '.' ? { reply: '250 ok', delayMs: 60 } : undefined) };
  const a = await startScriptedServer(opts);
  const b = await startScriptedServer(opts);
  try {
    const pool = new ClientPool({ maxPerDestination: 1 });
    const ca = { open: 0, max: 0, live: 0 };
    const cb = { open: 0, max: 0, live: 0 };
    const send = (dest: string, srv: ScriptedServer, counter: typeof ca) => pool.use(dest, opener(srv, counter), (c) => c.send(tx('x@example.com')));
    const running = [send('a', a, ca), send('a', a, ca), send('b', b, cb), send('b', b, cb)];
    await sleep(30);
    assert.deepEqual(pool.stats('a'), { active: 1, idle: 0, waiting: 1 });
    assert.deepEqual(pool.stats('b'), { active: 1, idle: 0, waiting: 1 });
    await Promise.all(running);
    assert.deepEqual([ca.open, ca.max, cb.open, cb.max], [1, 1, 1, 1]);
    await pool.close();
  } finally {
    await a.close();
    await b.close();
  }
});

test('a failed open frees its slot; release(false) and a throwing use() QUIT the connection', () =>
  withServer({}, async (srv) => {
    const pool = new ClientPool({ maxPerDestination: 1 });
    await assert.rejects(pool.acquire('d', () => Promise.reject(new Error('no route'))), /no route/);
    const lease = await pool.acquire('d', opener(srv));
    assert.equal(lease.reused, false);
    lease.release(false);
    lease.release(false);
    await assert.rejects(pool.use('d', opener(srv), () => Promise.reject(new Error('caller failed'))), /caller failed/);
    await srv.closedSessions(2);
    assert.ok(srv.sessions.every((s) => s.commands.at(-1) === 'QUIT'));
    assert.deepEqual(pool.stats('d'), { active: 0, idle: 0, waiting: 0 });
    await pool.close();
  }));

test('close() fails waiting and later acquires', () =>
  withServer({}, async (srv) => {
    const pool = new ClientPool({ maxPerDestination: 1 });
    const held = await pool.acquire('d', opener(srv));
    const waiting = pool.acquire('d', opener(srv));
    await sleep(10);
    await pool.close();
    await assert.rejects(waiting, /client pool: closed/);
    await assert.rejects(pool.acquire('d', opener(srv)), /client pool: closed/);
    held.release();
    await srv.closedSessions(1);
    assert.equal(srv.sessions.length, 1);
  }));
