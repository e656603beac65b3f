import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, type Harness } from '../helpers/harness.js';
import { TestClient, sendMail, message } from '../helpers/smtp-client.js';
import { hashPassword } from '../../src/policy/password.js';
import type { Envelope } from '../../src/queue/envelope.js';
import { interfaceAddresses } from '../../src/policy/own-addresses.js';

// The classic open-relay battery against a default install: only 127.0.0.1/32 may relay
// (relay mode "either": by address or by AUTH). Every trick from an outside address must be
// refused, and nothing may ever be queued with a remote route.

let h: Harness;
const OUTSIDE = '127.0.0.2';
// Documentation addresses this machine does not have.
const NOT_OURS = ['192.0.2.1', '198.51.100.1', '203.0.113.1'].find((a) => !interfaceAddresses().has(a))!;
const NOT_OURS_6 = ['2001:db8::1', '2001:db8::2'].find((a) => !interfaceAddresses().has(a))!;
const b64 = (s: string): string => Buffer.from(s).toString('base64');

before(async () => {
  h = await startServer({
    domains: [
      { name: 'localhost', catchAll: true },
      // A local IDN domain, configured in its ASCII (punycode) form: bücher.test.
      { name: 'xn--bcher-kva.test', catchAll: true },
    ],
    users: [{ name: 'alice', password: await hashPassword('s3cret'), addresses: ['alice@localhost'] }],
    relay: { networks: ['127.0.0.1/32'] },
    services: [{ id: 0, name: 'mx', listen: '127.0.0.1', port: 0, authWithoutTls: true }],
    // The battery sends many refused commands in one session; the error limit would end the
    // session early and hide later cases.
    limits: { errors: 1000 },
  });
});
after(() => h.stop());

interface Case {
  rcpt: string;
  /** The reply the RCPT must get. */
  want: RegExp;
  /** MAIL FROM carries SMTPUTF8. */
  utf8?: boolean;
}

const RELAY_DENIED = /^554 5\.7\.1 .*Relay access denied/;
const ROUTING = /^550 5\.7\.1 .*Sender-specified routing is not allowed/;
const SYNTAX = /^501 5\.5\.4 /;

const REFUSED: Case[] = [
  { rcpt: '<user@remote.test>', want: RELAY_DENIED },
  { rcpt: 'user@remote.test', want: RELAY_DENIED },
  { rcpt: '<user@REMOTE.TEST>', want: RELAY_DENIED },
  { rcpt: '<User@Remote.Test>', want: RELAY_DENIED },
  { rcpt: '<user%remote.test@localhost>', want: ROUTING },
  { rcpt: '<user%remote.test@LOCALHOST>', want: ROUTING },
  { rcpt: '<user%remote.test@[127.0.0.1]>', want: ROUTING },
  { rcpt: '<remote.test!user@localhost>', want: ROUTING },
  { rcpt: '<remote.test!user@[127.0.0.1]>', want: ROUTING },
  { rcpt: '<"user@remote.test"@localhost>', want: ROUTING },
  { rcpt: '<"user@remote.test"@[127.0.0.1]>', want: ROUTING },
  { rcpt: '<"user%remote.test"@localhost>', want: ROUTING },
  { rcpt: '<"user@remote.test">', want: SYNTAX },
  { rcpt: '<user%remote.test>', want: SYNTAX },
  { rcpt: '<remote.test!user>', want: SYNTAX },
  { rcpt: '<@localhost:user@remote.test>', want: RELAY_DENIED },
  { rcpt: '<@localhost,@mx.test:user@remote.test>', want: RELAY_DENIED },
  { rcpt: '<@[127.0.0.1]:user@remote.test>', want: RELAY_DENIED },
  { rcpt: '<user@remote.test@localhost>', want: SYNTAX },
  // An address literal of another host (this one's own are local, below).
  { rcpt: `<user@[${NOT_OURS}]>`, want: RELAY_DENIED },
  { rcpt: `<user@[IPv6:${NOT_OURS_6}]>`, want: RELAY_DENIED },
  { rcpt: '<user@localhost.>', want: SYNTAX },
  { rcpt: '<user@remote.test.>', want: SYNTAX },
  { rcpt: '<user%remote.test@localhost.>', want: SYNTAX },
  // IDN spellings of a remote domain.
  { rcpt: '<user@rémote.test>', want: RELAY_DENIED, utf8: true },
  { rcpt: '<user@RÉMOTE.TEST>', want: RELAY_DENIED, utf8: true },
  { rcpt: '<user@xn--rmote-bsa.test>', want: RELAY_DENIED },
  { rcpt: '<user@rémote.test>', want: /^553 5\.6\.7 / },
];

/** Spellings of local addresses: accepted, and delivered to the local mailbox named. */
const LOCAL: (Case & { mailbox: string })[] = [
  { rcpt: '<upper@LOCALHOST>', want: /^250 /, mailbox: 'localhost/upper' },
  { rcpt: '<idn@bücher.test>', want: /^250 /, utf8: true, mailbox: 'xn--bcher-kva.test/idn' },
  { rcpt: '<idn-upper@BÜCHER.TEST>', want: /^250 /, utf8: true, mailbox: 'xn--bcher-kva.test/idn-upper' },
  { rcpt: '<puny@XN--BCHER-KVA.test>', want: /^250 /, mailbox: 'xn--bcher-kva.test/puny' },
  // RFC 5321 §C: the source route is ignored, the mailbox is local.
  { rcpt: '<@remote.test:routed@localhost>', want: /^250 /, mailbox: 'localhost/routed' },
  // An address literal naming this host: the first local domain's user.
  { rcpt: '<literal@[127.0.0.1]>', want: /^250 /, mailbox: 'localhost/literal' },
  ...(interfaceAddresses().has('::1') ? [{ rcpt: '<literal6@[IPv6:0:0:0:0:0:0:0:1]>', want: /^250 /, mailbox: 'localhost/literal6' }] : []),
];

const SENDERS = ['<>', '<postmaster@localhost>', '<spammer@remote.test>'];

/** Every refused case with every sender; each transaction then ends in RSET. */
async function battery(c: TestClient, label: string): Promise<void> {
  for (const from of SENDERS) {
    for (const k of REFUSED) {
      const mail = await c.cmd(`MAIL FROM:${from}${k.utf8 ? ' SMTPUTF8' : ''}`);
      assert.equal(mail.code, 250, `${label}: MAIL FROM:${from}`);
      const r = await c.cmd(`RCPT TO:${k.rcpt}`);
      assert.match(r.raw, k.want, `${label}: RCPT TO:${k.rcpt} from ${from}`);
      // No recipient was taken: there is nothing to send.
      assert.match((await c.cmd('DATA')).raw, /^554 5\.5\.1 /, `${label}: DATA after ${k.rcpt}`);
      assert.equal((await c.cmd('RSET')).code, 250);
    }
  }
}

/** What was queued from the outside address without AUTH and goes (partly) off-site. */
async function relayedFromOutside(): Promise<Envelope[]> {
  await h.settle();
  return (await h.server.spool.list()).filter((e) => e.client.ip === OUTSIDE && !e.client.authUser && e.recipients.some((r) => r.route.kind === 'remote'));
}

async function outside(): Promise<TestClient> {
  const c = await TestClient.connect(h.port, { localAddress: OUTSIDE });
  assert.equal((await c.read()).code, 220);
  return c;
}

test('every relay trick from an outside address is refused: fresh, after RSET, after a second EHLO', async () => {
  const c = await outside();
  assert.equal((await c.cmd('EHLO client.test')).code, 250);
  await battery(c, 'fresh');
  // A transaction in progress (with an accepted local recipient) then RSET.
  await c.cmd('MAIL FROM:<a@remote.test>');
  assert.equal((await c.cmd('RCPT TO:<alice@localhost>')).code, 250);
  assert.equal((await c.cmd('RSET')).code, 250);
  await battery(c, 'after RSET');
  // A second EHLO (a new name) resets the session state too; then plain HELO.
  assert.equal((await c.cmd('EHLO other.test')).code, 250);
  await battery(c, 'after second EHLO');
  assert.equal((await c.cmd('HELO third.test')).code, 250);
  for (const k of REFUSED.filter((x) => !x.utf8)) {
    await c.cmd('MAIL FROM:<a@remote.test>');
    assert.match((await c.cmd(`RCPT TO:${k.rcpt}`)).raw, k.want, `after HELO: ${k.rcpt}`);
    await c.cmd('RSET');
  }
  // A refused remote recipient beside an accepted local one: only the local one is stored.
  await c.cmd('EHLO client.test');
  await c.cmd('MAIL FROM:<a@remote.test>');
  assert.equal((await c.cmd('RCPT TO:<alice@localhost>')).code, 250);
  assert.match((await c.cmd('RCPT TO:<victim@remote.test>')).raw, RELAY_DENIED);
  assert.match((await c.cmd('RCPT TO:<victim%remote.test@localhost>')).raw, ROUTING);
  assert.equal((await c.cmd('DATA')).code, 354);
  c.write(`${message('mixed')}.\r\n`);
  assert.equal((await c.read()).code, 250);
  await c.cmd('QUIT');
  assert.deepEqual(await relayedFromOutside(), []);
  assert.equal((await h.mailbox('localhost/alice')).filter((m) => m.includes('Subject: mixed')).length, 1);
});

test('local spellings (LOCALHOST, bücher.test with SMTPUTF8, punycode, a source route) are delivered locally, not relayed', async () => {
  for (const prelude of ['fresh', 'after RSET', 'after second EHLO']) {
    const c = await outside();
    assert.equal((await c.cmd('EHLO client.test')).code, 250);
    if (prelude === 'after RSET') {
      await c.cmd('MAIL FROM:<a@remote.test>');
      await c.cmd('RSET');
    }
    if (prelude === 'after second EHLO') assert.equal((await c.cmd('EHLO again.test')).code, 250);
    for (const k of LOCAL) {
      assert.equal((await c.cmd(`MAIL FROM:<sender@remote.test>${k.utf8 ? ' SMTPUTF8' : ''}`)).code, 250);
      assert.match((await c.cmd(`RCPT TO:${k.rcpt}`)).raw, k.want, k.rcpt);
      assert.equal((await c.cmd('DATA')).code, 354);
      c.write(`${message(`${prelude} ${k.rcpt}`)}.\r\n`);
      assert.equal((await c.read()).code, 250, k.rcpt);
    }
    c.close();
  }
  for (const k of LOCAL) {
    const box = (await h.mailbox(k.mailbox)).map((m) => Buffer.from(m, 'latin1').toString('utf8'));
    const subjects = box.map((m) => /^Subject: (.*)$/m.exec(m)?.[1]).sort();
    assert.deepEqual(subjects, [`after RSET ${k.rcpt}`, `after second EHLO ${k.rcpt}`, `fresh ${k.rcpt}`], k.mailbox);
  }
  // Delivered and gone from the queue: nothing waits for a relay.
  assert.deepEqual(await relayedFromOutside(), []);
  assert.deepEqual(await h.server.spool.list(), []);
});

test('127.0.0.1 (the relay network) and an authenticated user may relay', async () => {
  const inside = await TestClient.connect(h.port);
  await inside.read();
  await inside.cmd('EHLO inside.test');
  assert.equal((await sendMail(inside, 'alice@localhost', ['friend@remote.test'], message('relayed by address'))).code, 250);
  inside.close();

  const c = await outside();
  const ehlo = await c.cmd('EHLO client.test');
  assert.ok(ehlo.lines.some((l) => /AUTH PLAIN LOGIN$/.test(l)));
  assert.match((await c.cmd('MAIL FROM:<alice@localhost>')).raw, /^250 /);
  assert.match((await c.cmd('RCPT TO:<friend@remote.test>')).raw, RELAY_DENIED, 'not before AUTH');
  await c.cmd('RSET');
  assert.match((await c.cmd(`AUTH PLAIN ${b64('\0alice\0s3cret')}`)).raw, /^235 2\.7\.0 /);
  assert.equal((await sendMail(c, 'alice@localhost', ['friend@remote.test', 'Other@REMOTE.test'], message('relayed by auth'))).code, 250);
  c.close();

  const queued = await h.server.spool.list();
  const byAddress = queued.find((e) => e.client.ip === '127.0.0.1' && e.recipients.some((r) => r.address === 'friend@remote.test'));
  assert.ok(byAddress, 'queued for the relay');
  assert.deepEqual(byAddress.recipients.map((r) => r.route.kind), ['remote']);
  const byAuth = queued.find((e) => e.client.authUser === 'alice');
  assert.ok(byAuth);
  assert.equal(byAuth.client.ip, OUTSIDE);
  assert.deepEqual(
    byAuth.recipients.map((r) => [r.address, r.route.kind]),
    [
      ['friend@remote.test', 'remote'],
      ['Other@REMOTE.test', 'remote'],
    ],
  );
  assert.deepEqual(await relayedFromOutside(), []);
});
