import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { startServer } from '../helpers/harness.js';
import { startScriptServer, type ScriptHarness } from '../helpers/script-server.js';
import { TestClient, sendMail, message } from '../helpers/smtp-client.js';
import { Batv } from '../../src/policy/batv.js';
import { hashPassword } from '../../src/policy/password.js';

const b64 = (s: string): string => Buffer.from(s).toString('base64');
const DAY_MS = 86_400_000;

// ---- BATV (S26) ------------------------------------------------------------------------

const BATV_CONFIG = { enabled: true, keys: [{ id: 0, secret: 'k' }], validDays: 7 };
let batvServer: ScriptHarness;

before(async () => {
  batvServer = await startScriptServer('', {
    batv: BATV_CONFIG,
    domains: [{ name: 'localhost', catchAll: true }],
    users: [{ name: 'alice', addresses: ['alice@localhost'] }],
  });
});
after(() => batvServer.stop());

/** An outside client (no relay rights) after EHLO. */
async function outside(port: number, ip = '127.0.0.2'): Promise<TestClient> {
  const c = await TestClient.connect(port, { localAddress: ip });
  assert.equal((await c.read()).code, 220);
  assert.equal((await c.cmd('EHLO bounce.remote.test')).code, 250);
  return c;
}

/** A bounce (MAIL FROM:<>) to `to`; returns the RCPT reply. */
async function bounceRcpt(c: TestClient, to: string): Promise<string> {
  assert.equal((await c.cmd('MAIL FROM:<>')).code, 250);
  const r = (await c.cmd(`RCPT TO:<${to}>`)).raw;
  await c.cmd('RSET');
  return r;
}

test('BATV: a bounce to an address we signed is accepted and delivered untagged', async () => {
  // What the relay puts in MAIL FROM when alice sends out (R6), with the same keys.
  const signer = new Batv([{ id: 0, secret: 'k' }], 7);
  const tagged = signer.sign('alice@localhost');
  assert.match(tagged, /^prvs=0\d{3}[0-9a-f]{6}=alice@localhost$/);
  const c = await outside(batvServer.port);
  assert.equal((await sendMail(c, '', [tagged], message('your message bounced'))).code, 250);
  // The tag is case-insensitive, like the rest of the address.
  assert.equal((await sendMail(c, '', [tagged.toUpperCase().replace('@LOCALHOST', '@localhost')], message('upper-case tag'))).code, 250);
  c.close();
  const box = await batvServer.mailbox('localhost/alice');
  assert.equal(box.length, 2);
  assert.match(box[0], /^Return-Path: <>\r\n/);
  assert.match(box[0], /\tfor <alice@localhost>;/, 'the tag is removed before delivery');
  assert.doesNotMatch(box[0], /prvs=/);
  assert.deepEqual(await batvServer.mailbox(`localhost/${tagged.split('@')[0]}`), []);
});

test('BATV: forged, expired, unknown-key and untagged bounces to a local address get 550 5.7.1', async () => {
  const keys = [{ id: 0, secret: 'k' }];
  const good = new Batv(keys, 7).sign('alice@localhost');
  const hash = good.slice(9, 15);
  const forged = good.replace(hash, hash.replace(/^./, (ch) => (ch === '0' ? '1' : '0')));
  const expired = new Batv(keys, 7, () => Date.now() - 10 * DAY_MS).sign('alice@localhost');
  const stillValid = new Batv(keys, 7, () => Date.now() - 6 * DAY_MS).sign('alice@localhost');
  const otherSecret = new Batv([{ id: 0, secret: 'not-ours' }], 7).sign('alice@localhost');
  const unknownKey = new Batv([{ id: 3, secret: 'k' }], 7).sign('alice@localhost');
  const otherAddress = good.replace('=alice@', '=bob@');
  const c = await outside(batvServer.port);
  for (const to of [forged, expired, otherSecret, unknownKey, otherAddress, 'alice@localhost', 'nobody@localhost', 'prvs=garbage=alice@localhost']) {
    assert.match(await bounceRcpt(c, to), /^550 5\.7\.1 .*BATV/, to);
  }
  assert.match(await bounceRcpt(c, stillValid), /^250 /, 'six days old is within validDays');
  // Not a bounce: an untagged local address is unaffected.
  assert.equal((await c.cmd('MAIL FROM:<someone@remote.test>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<alice@localhost>')).code, 250);
  c.close();
  await batvServer.settle();
  assert.deepEqual(await batvServer.server.spool.list(), []);
});

test('BATV: UseBATV = false in Start turns the check off', async () => {
  await batvServer.setScript('function Start() UseBATV = false return "" end');
  try {
    const c = await outside(batvServer.port);
    assert.equal((await sendMail(c, '', ['alice@localhost'], message('untagged bounce allowed'))).code, 250);
    c.close();
    const box = await batvServer.mailbox('localhost/alice');
    assert.ok(box.some((m) => m.includes('Subject: untagged bounce allowed')));
  } finally {
    await batvServer.setScript('');
  }
  // Back to the configured default for new connections.
  const d = await outside(batvServer.port);
  assert.match(await bounceRcpt(d, 'alice@localhost'), /^550 5\.7\.1 /);
  d.close();
});

// ---- AUTH throttle ---------------------------------------------------------------------

test('AUTH brute force: failures from one address slow down across connections, then 421 4.7.0', async () => {
  const h = await startServer({
    users: [{ name: 'alice', password: await hashPassword('s3cret'), addresses: ['alice@localhost'] }],
    services: [{ id: 0, name: 'mx', listen: '127.0.0.1', port: 0, authWithoutTls: true }],
    // Two free failures, then 1.5 s doubling to 3 s; blocked from the sixth failure on. Delays
    // this long tell "at once" (a scrypt check, slow on a loaded machine) from "delayed".
    limits: { authFailures: { free: 2, block: 6, delayMs: 1500, maxDelayMs: 3000 } },
  });
  const timedAuth = async (c: TestClient, password: string): Promise<{ raw: string; ms: number }> => {
    const t0 = Date.now();
    const r = await c.cmd(`AUTH PLAIN ${b64(`\0alice\0${password}`)}`);
    return { raw: r.raw, ms: Date.now() - t0 };
  };
  try {
    const attacker = '127.0.0.5';
    // Connection 1: three failures, then the session is closed.
    let c = await outside(h.port, attacker);
    const times: number[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await timedAuth(c, `guess${i}`);
      assert.match(r.raw, /^535 5\.7\.8 /);
      times.push(r.ms);
    }
    await c.waitClosed();
    // Connection 2: the count carries over.
    c = await outside(h.port, attacker);
    for (let i = 3; i < 6; i++) {
      const r = await timedAuth(c, `guess${i}`);
      assert.match(r.raw, /^535 5\.7\.8 /);
      times.push(r.ms);
    }
    await c.waitClosed();
    assert.ok(times[0] < 1400 && times[1] < 1400, `free failures are answered at once: ${times}`);
    assert.ok(times[2] >= 1450, `the 3rd failure is delayed: ${times}`);
    assert.ok(times[3] >= 2900 && times[4] >= 2900, `the 4th and 5th failures wait longer: ${times}`);
    // Blocked: even the right password gets 421 4.7.0 at AUTH, and the connection closes.
    c = await outside(h.port, attacker);
    assert.match((await timedAuth(c, 's3cret')).raw, /^421 4\.7\.0 /);
    await c.waitClosed();

    // Another address is unaffected.
    c = await outside(h.port, '127.0.0.6');
    const other = await timedAuth(c, 'wrong');
    assert.match(other.raw, /^535 /);
    assert.ok(other.ms < 1400, `${other.ms} ms`);
    assert.match((await timedAuth(c, 's3cret')).raw, /^235 2\.7\.0 /);
    c.close();

    // A success resets the count: after two failures and a success, the next failure is free again.
    const user = '127.0.0.7';
    c = await outside(h.port, user);
    assert.match((await timedAuth(c, 'typo1')).raw, /^535 /);
    assert.match((await timedAuth(c, 'typo2')).raw, /^535 /);
    assert.match((await timedAuth(c, 's3cret')).raw, /^235 /);
    c.close();
    c = await outside(h.port, user);
    const after = await timedAuth(c, 'typo3');
    assert.match(after.raw, /^535 /);
    assert.ok(after.ms < 1400, `the count started again: ${after.ms} ms`);
    c.close();
  } finally {
    await h.stop();
  }
});

test('AUTH exchanges already under way when the address gets blocked are refused, even with the right password', async () => {
  const h = await startServer({
    users: [{ name: 'alice', password: await hashPassword('s3cret'), addresses: ['alice@localhost'] }],
    services: [{ id: 0, name: 'mx', listen: '127.0.0.1', port: 0, authWithoutTls: true }],
    limits: { authFailures: { free: 3, block: 3, delayMs: 0, maxDelayMs: 0 } },
  });
  try {
    const ip = '127.0.0.10';
    // Two exchanges opened in parallel before any failure...
    const a = await outside(h.port, ip);
    const b = await outside(h.port, ip);
    assert.equal((await a.cmd('AUTH PLAIN')).raw, '334\r\n');
    assert.equal((await b.cmd('AUTH LOGIN')).code, 334);
    assert.equal((await b.cmd(b64('alice'))).code, 334);
    // ...while a third connection uses up the failures.
    const c = await outside(h.port, ip);
    for (let i = 0; i < 3; i++) assert.match((await c.cmd(`AUTH PLAIN ${b64(`\0alice\0guess${i}`)}`)).raw, /^535 /);
    await c.waitClosed();
    assert.match((await a.cmd(b64('\0alice\0s3cret'))).raw, /^421 4\.7\.0 /);
    await a.waitClosed();
    assert.match((await b.cmd(b64('guess3'))).raw, /^421 4\.7\.0 /);
    await b.waitClosed();
  } finally {
    await h.stop();
  }
});

// ---- CRAM-MD5 --------------------------------------------------------------------------

test('CRAM-MD5: HMAC-MD5 of the challenge authenticates a user with a cramSecret; a wrong digest gets 535', async () => {
  // RFC 2195's example, to check the digest computation used below.
  assert.equal(createHmac('md5', 'tanstaaftanstaaf').update('<1896.697170952@postoffice.reston.mci.net>').digest('hex'), 'b913a602c7eda7a495b4e6e7334d3890');
  const password = await hashPassword('s3cret');
  const h = await startServer({
    users: [
      { name: 'alice', password, addresses: ['alice@localhost'] },
      { name: 'bob', cramSecret: 'tanstaaftanstaaf', addresses: ['bob@localhost'] },
    ],
    services: [{ id: 0, name: 'mx', listen: '127.0.0.1', port: 0, authWithoutTls: true }],
    relay: { networks: ['127.0.0.1/32'], mode: 'either' },
  });
  const plain = await startServer({
    users: [{ name: 'alice', password, addresses: ['alice@localhost'] }],
    services: [{ id: 0, name: 'mx', listen: '127.0.0.1', port: 0, authWithoutTls: true }],
  });
  const cram = async (c: TestClient, user: string, secret: string): Promise<string> => {
    const ch = await c.cmd('AUTH CRAM-MD5');
    assert.match(ch.raw, /^334 [A-Za-z0-9+/]+=*\r\n$/);
    const challenge = Buffer.from(ch.lines[0].slice(4), 'base64').toString();
    assert.match(challenge, /^<[^<>@\s]+@mx\.test>$/, 'an RFC 2195 msg-id style challenge');
    const digest = createHmac('md5', secret).update(challenge).digest('hex');
    return (await c.cmd(b64(`${user} ${digest}`))).raw;
  };
  try {
    // Advertised only where some user has a cramSecret.
    let c = await outside(plain.port, '127.0.0.8');
    const ehlo = await c.cmd('EHLO client.test');
    assert.ok(ehlo.lines.some((l) => /^250[ -]AUTH PLAIN LOGIN$/.test(l)), ehlo.raw);
    assert.match((await c.cmd('AUTH CRAM-MD5')).raw, /^504 5\.5\.4 /);
    c.close();

    c = await outside(h.port, '127.0.0.8');
    const ehlo2 = await c.cmd('EHLO client.test');
    assert.ok(ehlo2.lines.some((l) => /^250[ -]AUTH PLAIN LOGIN CRAM-MD5$/.test(l)), ehlo2.raw);
    assert.match(await cram(c, 'bob', 'wrong-secret'), /^535 5\.7\.8 /);
    assert.match(await cram(c, 'alice', 's3cret'), /^535 5\.7\.8 /, 'no cramSecret: a password hash cannot serve CRAM-MD5');
    c.close();

    c = await outside(h.port, '127.0.0.9');
    assert.match(await cram(c, 'bob', 'tanstaaftanstaaf'), /^235 2\.7\.0 /);
    // Authenticated: may relay (mode either).
    assert.equal((await sendMail(c, 'bob@localhost', ['friend@remote.test'], message('via cram'))).code, 250);
    c.close();
    const env = (await h.server.spool.list()).find((e) => e.client.authUser === 'bob');
    assert.ok(env);
    assert.equal(env.recipients[0].route.kind, 'remote');
  } finally {
    await h.stop();
    await plain.stop();
  }
});
