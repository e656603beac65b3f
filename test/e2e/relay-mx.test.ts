import { test, before, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { TestDnsServer } from '../helpers/dns-server.js';
import { startScriptedServer, type ScriptedServer } from '../helpers/scripted-smtp-server.js';
import { mail, parseDsn, queueMail, quickDelivery, startRelayServer, waitFor, type RelayHarness, type SenderInput } from '../helpers/relay-fixtures.js';

// Direct delivery (sender mode "mx") through a test DNS server: MX preference order, fallback
// to the next MX, implicit MX (A and AAAA), null MX (RFC 7505) and DNS failures. In MX mode
// the sender's port is used for every host, so the peers listen on 127.0.0.x and ::1 with one
// port.

const dns = new TestDnsServer();
let dnsAddress = '';
let port = 0;
/** By address: 127.0.0.2 mx1, 127.0.0.3 mx2, 127.0.0.5 busy (421 greeting), ::1 v6. */
const peers = new Map<string, ScriptedServer>();

before(async () => {
  dnsAddress = await dns.start();
  for (let attempt = 0; ; attempt++) {
    try {
      const first = await startScriptedServer({ hostname: 'mx1.example' }, 0, '127.0.0.2');
      port = first.port;
      peers.set('127.0.0.2', first);
      peers.set('127.0.0.3', await startScriptedServer({ hostname: 'mx2.example' }, port, '127.0.0.3'));
      peers.set('127.0.0.5', await startScriptedServer({ hostname: 'busy.example', greeting: '421 4.3.2 busy.example Too busy, try later' }, port, '127.0.0.5'));
      peers.set('::1', await startScriptedServer({ hostname: 'v6.example' }, port, '::1'));
      break;
    } catch (err) {
      for (const p of peers.values()) await p.close();
      peers.clear();
      if (attempt === 4) throw err;
    }
  }
  dns
    // Listed worst first: the order comes from the preferences.
    .add('pref.test', 'MX', { preference: 20, exchange: 'mx2.pref.test' }, { preference: 10, exchange: 'mx1.pref.test' })
    .add('mx1.pref.test', 'A', '127.0.0.2')
    .add('mx2.pref.test', 'A', '127.0.0.3')
    // 127.0.0.4: nobody listens, the connection is refused.
    .add('fallback.test', 'MX', { preference: 5, exchange: 'dead.fallback.test' }, { preference: 50, exchange: 'alive.fallback.test' })
    .add('dead.fallback.test', 'A', '127.0.0.4')
    .add('alive.fallback.test', 'A', '127.0.0.3')
    .add('busy.test', 'MX', { preference: 1, exchange: 'busy.busy.test' }, { preference: 2, exchange: 'backup.busy.test' })
    .add('busy.busy.test', 'A', '127.0.0.5')
    .add('backup.busy.test', 'A', '127.0.0.2')
    .add('implicit.test', 'A', '127.0.0.2')
    .add('implicit6.test', 'AAAA', '::1')
    .add('nullmx.test', 'MX', { preference: 0, exchange: '.' })
    .add('alldown.test', 'MX', { preference: 10, exchange: 'dead.alldown.test' })
    .add('dead.alldown.test', 'A', '127.0.0.4')
    .add('servfail.test', 'A', '127.0.0.2');
  dns.rcodes.set('servfail.test', 2);
});

after(async () => {
  dns.stop();
  for (const p of peers.values()) await p.close();
});

const mxSender = (extra: Partial<SenderInput> = {}): SenderInput => ({ id: 0, name: 'direct', mode: 'mx', port, tls: 'none', connectionsPerDestination: 1, timeouts: { connect: 2 }, ...extra });

async function relay(t: TestContext, relayout?: string): Promise<RelayHarness> {
  const h = await startRelayServer(
    // No name here goes unanswered, so a long timeout and a second try cost nothing. With one
    // short try, a busy CI machine lost an A lookup once (c-ares, since 1.32, times a query out
    // after what past answers took, up to the timeout set; the DNS server answers from this
    // same process), and the mail then rightly went to the next MX.
    { senders: [mxSender()], dns: { servers: [dnsAddress], timeoutMs: 3000, tries: 2 }, delivery: quickDelivery(3600) },
    relayout,
  );
  t.after(() => h.stop());
  return h;
}

/** Which peers got a RCPT for `address`. */
function receivedBy(address: string): string[] {
  return [...peers].filter(([, p]) => p.sessions.some((s) => s.commands.includes(`RCPT TO:<${address}>`) && s.messages.length)).map(([a]) => a);
}

async function settled(h: RelayHarness, n: number): Promise<void> {
  const c = h.server.relay.counters;
  await waitFor(`${n} settled recipients`, () => c.delivered + c.deferred + c.bounced >= n);
  await h.server.relay.idle();
}

async function dsnFor(h: RelayHarness, n = 1): Promise<ReturnType<typeof parseDsn>[]> {
  const box = await waitFor('DSN', async () => {
    const m = await h.mailbox('localhost/sender');
    return m.length >= n ? m : null;
  });
  return box.map(parseDsn);
}

test('MX preference order: the most preferred host gets the mail; ConnectedServer is its greeting name', async (t) => {
  const h = await relay(t, 'function ServerConnected() print("connected", ConnectedServer) end');
  const prints: string[] = [];
  h.server.scripts.printSink = (s) => prints.push(s);
  await queueMail(h.port, 'sender@localhost', ['a@pref.test'], mail('preferred'));
  await settled(h, 1);
  assert.equal(h.server.relay.counters.delivered, 1);
  assert.deepEqual(receivedBy('a@pref.test'), ['127.0.0.2']);
  assert.deepEqual(prints, ['connected\tmx1.example']);
  assert.ok(dns.queries.includes('pref.test MX'));
});

test('fallback to the next MX when the first refuses the connection, or greets with 421', async (t) => {
  const h = await relay(t);
  await queueMail(h.port, 'sender@localhost', ['b@fallback.test'], mail('fallback'));
  await queueMail(h.port, 'sender@localhost', ['b@busy.test'], mail('busy'));
  await settled(h, 2);
  assert.deepEqual({ ...h.server.relay.counters }, { delivered: 2, deferred: 0, bounced: 0 });
  assert.deepEqual(receivedBy('b@fallback.test'), ['127.0.0.3']);
  assert.deepEqual(receivedBy('b@busy.test'), ['127.0.0.2']);
  assert.ok(peers.get('127.0.0.5')!.sessions.length >= 1, 'the busy MX was tried first');
});

test('no MX: the domain\'s own A or AAAA address (implicit MX)', async (t) => {
  const h = await relay(t);
  await queueMail(h.port, 'sender@localhost', ['c@implicit.test'], mail('implicit A'));
  await queueMail(h.port, 'sender@localhost', ['c@implicit6.test'], mail('implicit AAAA'));
  await settled(h, 2);
  assert.deepEqual({ ...h.server.relay.counters }, { delivered: 2, deferred: 0, bounced: 0 });
  assert.deepEqual(receivedBy('c@implicit.test'), ['127.0.0.2']);
  assert.deepEqual(receivedBy('c@implicit6.test'), ['::1']);
});

test('null MX (RFC 7505) and a domain that does not exist are bounced at once, without connecting', async (t) => {
  const h = await relay(t);
  const sessionsBefore = [...peers.values()].reduce((n, p) => n + p.sessions.length, 0);
  await queueMail(h.port, 'sender@localhost', ['d@nullmx.test', 'd@nosuchdomain.test'], mail('nowhere'));
  await settled(h, 2);
  assert.deepEqual({ ...h.server.relay.counters }, { delivered: 0, deferred: 0, bounced: 2 });
  assert.equal([...peers.values()].reduce((n, p) => n + p.sessions.length, 0), sessionsBefore);
  const reports = await dsnFor(h, 1);
  const recipients = reports.flatMap((r) => r.recipients);
  const byRcpt = Object.fromEntries(recipients.map((r) => [r.get('final-recipient'), r]));
  assert.equal(byRcpt['rfc822; d@nullmx.test'].get('action'), 'failed');
  assert.equal(byRcpt['rfc822; d@nullmx.test'].get('status'), '5.1.10');
  assert.match(byRcpt['rfc822; d@nullmx.test'].get('diagnostic-code')!, /^smtp; 550 5\.1\.10 .*null MX/);
  assert.equal(byRcpt['rfc822; d@nosuchdomain.test'].get('status'), '5.1.2');
});

test('DNS failure (SERVFAIL) and every MX unreachable are temporary: deferred, not bounced', async (t) => {
  const h = await relay(t);
  const id = await queueMail(h.port, 'sender@localhost', ['e@servfail.test', 'e@alldown.test'], mail('later'));
  await settled(h, 2);
  assert.deepEqual({ ...h.server.relay.counters }, { delivered: 0, deferred: 2, bounced: 0 });
  const [servfail, alldown] = h.server.queue.get(id)!.recipients;
  assert.equal(servfail.state, 'pending');
  assert.match(servfail.lastError!, /^451 4\.4\.3 /);
  assert.equal(alldown.state, 'pending');
  assert.match(alldown.lastError!, /^451 4\.4\.1 .*127\.0\.0\.4/);
  assert.deepEqual(await h.mailbox('localhost/sender'), []);
});
