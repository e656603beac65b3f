import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { TestDnsServer } from '../helpers/dns-server.js';
import { startServer, type HarnessOptions } from '../helpers/harness.js';
import { startScriptServer } from '../helpers/script-server.js';
import { TestClient, sendMail, message } from '../helpers/smtp-client.js';
import { vpop3Number } from '../../src/policy/dnsbl.js';

// S20 end to end: a real server whose every lookup goes to a DNS server on loopback.

const dnsServer = new TestDnsServer();
let dnsAddr = '';
const V6_NIBBLES = '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2';

before(async () => {
  dnsServer
    // 127.0.0.2 is listed in zen.test and other.test; 127.0.0.3 is listed nowhere.
    .add('2.0.0.127.zen.test', 'A', '127.0.0.2')
    .add('2.0.0.127.other.test', 'A', '127.0.0.10')
    .add('2.0.0.127.late.test', 'A', '127.0.0.3')
    .add(`${V6_NIBBLES}.zen.test`, 'A', '127.0.0.4');
  dnsServer.delays.set('2.0.0.127.late.test', 600);
  dnsServer.silent.add('2.0.0.127.slow.test');
  dnsAddr = await dnsServer.start();
});
after(() => dnsServer.stop());

// The resolver waits longer than late.test's delay; slow.test never answers.
const dnsConfig = (): HarnessOptions['dns'] => ({ servers: [dnsAddr], timeoutMs: 1500, tries: 1 });

/** Connects from `ip`; returns the client, its greeting and how long the greeting took. */
async function connect(port: number, ip: string): Promise<{ c: TestClient; greeting: string; ms: number }> {
  const t0 = Date.now();
  const c = await TestClient.connect(port, { localAddress: ip });
  const g = await c.read();
  return { c, greeting: g.raw, ms: Date.now() - t0 };
}

/** The queries the DNS server received while `fn` ran. */
async function queriesDuring(fn: () => Promise<void>): Promise<string[]> {
  const from = dnsServer.queries.length;
  await fn();
  return dnsServer.queries.slice(from);
}

/** EHLO, MAIL and one RCPT; returns the RCPT reply line(s). */
async function rcpt(c: TestClient, to = 'alice@localhost'): Promise<string> {
  assert.equal((await c.cmd('EHLO client.test')).code, 250);
  assert.equal((await c.cmd('MAIL FROM:<sender@example.com>')).code, 250);
  return (await c.cmd(`RCPT TO:<${to}>`)).raw;
}

/** EHLO and one whole transaction; returns the final reply. */
async function send(c: TestClient, to: string[], subject: string) {
  assert.equal((await c.cmd('EHLO client.test')).code, 250);
  return sendMail(c, 'sender@example.com', to, message(subject));
}

// DoNOOP reports what the script sees: RBLFound and RBLResultInfo, zones sorted.
const REPORT = `
  function DoNOOP()
    local keys = {}
    for k in pairs(RBLResultInfo) do keys[#keys + 1] = k end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do parts[#parts + 1] = k .. "=" .. RBLResultInfo[k] end
    return "250 found=" .. tostring(RBLFound) .. " info=" .. table.concat(parts, ",")
  end`;

test('configured RBL: listed → RCPT 550 5.7.1; not listed and whitelisted → accepted', async () => {
  const h = await startServer({ dns: dnsConfig(), rbl: { enabled: true, servers: ['zen.test'] } });
  const w = await startServer({ dns: dnsConfig(), rbl: { enabled: true, servers: ['zen.test'], whitelist: ['10.*', '127.0.0.?'] } });
  try {
    // Listed: the connection is still greeted; each RCPT gets the configured reject message.
    let listed!: TestClient;
    const q = await queriesDuring(async () => {
      const s = await connect(h.port, '127.0.0.2');
      listed = s.c;
      assert.equal(s.greeting, '220 mx.test ESMTP moonpost\r\n');
    });
    assert.deepEqual(q, ['2.0.0.127.zen.test A'], 'one reversed-octet query per zone');
    assert.equal(await rcpt(listed), '550 5.7.1 Client host blocked by a DNS blocklist\r\n');
    assert.match((await listed.cmd('DATA')).raw, /^554 5\.5\.1 /, 'no recipient was accepted');
    listed.close();

    // Not listed: NXDOMAIN, mail goes through.
    const clean = await connect(h.port, '127.0.0.3');
    assert.equal((await send(clean.c, ['alice@localhost'], 'clean')).code, 250);
    clean.c.close();
    assert.equal((await h.mailbox('localhost/alice')).length, 1);

    // Whitelisted (wildcards): never looked up, accepted.
    let white!: TestClient;
    const wq = await queriesDuring(async () => {
      white = (await connect(w.port, '127.0.0.2')).c;
    });
    assert.deepEqual(wq, [], 'a whitelisted client is not looked up');
    assert.match(await rcpt(white), /^250 /);
    white.close();
  } finally {
    await h.stop();
    await w.stop();
  }
});

test('a zone that times out is no listing; the deadline bounds the wait', async () => {
  const h = await startServer({ dns: dnsConfig(), rbl: { enabled: true, servers: ['slow.test'], deadlineMs: 300 } });
  try {
    const s = await connect(h.port, '127.0.0.2');
    assert.equal(s.greeting, '220 mx.test ESMTP moonpost\r\n');
    assert.ok(s.ms >= 250 && s.ms < 1500, `greeting after the deadline, took ${s.ms} ms`);
    assert.match(await rcpt(s.c), /^250 /, 'a DNS failure is no listing');
    s.c.close();
  } finally {
    await h.stop();
  }
});

test('CheckRBL, RBLServers, RBLCheckAllServers set in Start; RBLFound and RBLResultInfo in VPOP3 byte order', async () => {
  // RBL is off in the configuration: the script switches it on.
  const h = await startScriptServer('', { dns: dnsConfig(), rbl: { enabled: false, deadlineMs: 3000 } });
  const start = (zones: string, all: boolean): string => `
    function Start()
      CheckRBL = true
      RBLServers = { ${zones} }
      RBLCheckAllServers = ${all}
      return ""
    end
    ${REPORT}`;
  try {
    // All servers: both listings are waited for, the late one included.
    await h.setScript(start('"zen.test", "late.test", "other.test", "nothing.test"', true));
    let s = await connect(h.port, '127.0.0.2');
    assert.ok(s.ms >= 550, `waited for late.test, took ${s.ms} ms`);
    assert.equal(
      (await s.c.cmd('NOOP')).raw,
      `250 found=true info=late.test=${vpop3Number('127.0.0.3')},other.test=167772287,zen.test=33554559\r\n`,
    );
    assert.equal(vpop3Number('127.0.0.3'), 50331775);
    s.c.close();

    // Stop at the first listing: the late zone is not waited for.
    await h.setScript(start('"zen.test", "late.test"', false));
    s = await connect(h.port, '127.0.0.2');
    assert.ok(s.ms < 450, `stopped at the first listing, took ${s.ms} ms`);
    assert.equal((await s.c.cmd('NOOP')).raw, '250 found=true info=zen.test=33554559\r\n');
    s.c.close();

    // RBLResultInfo is an IN global: changed in place or replaced, the next callback sees the
    // lookups' result again.
    await h.setScript(`${start('"zen.test", "late.test"', false)}
      function DoHELO(host)
        if host == "inplace" then RBLResultInfo["zen.test"] = 1 RBLResultInfo["fake.test"] = 2
        else RBLResultInfo = { ["fake.test"] = 3 } end
        return false, ""
      end`);
    s = await connect(h.port, '127.0.0.2');
    for (const helo of ['inplace', 'replaced']) {
      assert.equal((await s.c.cmd(`HELO ${helo}`)).code, 250);
      assert.equal((await s.c.cmd('NOOP')).raw, '250 found=true info=zen.test=33554559\r\n', helo);
    }
    s.c.close();

    // A clean client: looked up in every zone, found nothing.
    await h.setScript(start('"zen.test", "other.test"', true));
    const q = await queriesDuring(async () => {
      s = await connect(h.port, '127.0.0.3');
    });
    assert.deepEqual(q.sort(), ['3.0.0.127.other.test A', '3.0.0.127.zen.test A']);
    assert.equal((await s.c.cmd('NOOP')).raw, '250 found=false info=\r\n');
    s.c.close();

    // Whitelisted in Start: no lookup at all.
    await h.setScript(`
      function Start() CheckRBL = true RBLServers = { "zen.test" } RBLWhitelist = { "192.168.*", "127.0.0.?" } return "" end
      ${REPORT}`);
    const wq = await queriesDuring(async () => {
      s = await connect(h.port, '127.0.0.2');
    });
    assert.deepEqual(wq, []);
    assert.equal((await s.c.cmd('NOOP')).raw, '250 found=false info=\r\n');
    s.c.close();
  } finally {
    await h.stop();
  }
});

test('CheckRBL = false in Start turns configured lookups off', async () => {
  const h = await startScriptServer(`function Start() CheckRBL = false return "" end ${REPORT}`, {
    dns: dnsConfig(),
    rbl: { enabled: true, servers: ['zen.test'] },
  });
  try {
    let s!: Awaited<ReturnType<typeof connect>>;
    const q = await queriesDuring(async () => {
      s = await connect(h.port, '127.0.0.2');
    });
    assert.deepEqual(q, []);
    assert.equal((await s.c.cmd('NOOP')).raw, '250 found=false info=\r\n');
    assert.match(await rcpt(s.c), /^250 /);
    s.c.close();
  } finally {
    await h.stop();
  }
});

test('RBL actions set in RBLResults: accept, blackhole, redirect, reject (coded and bare), header', async () => {
  const h = await startScriptServer('', { dns: dnsConfig(), rbl: { enabled: true, servers: ['zen.test'] } });
  const withResults = (body: string): Promise<void> => h.setScript(`function RBLResults() ${body} return "" end`);
  try {
    // Default: the configured reject message.
    await withResults('');
    let s = await connect(h.port, '127.0.0.2');
    assert.equal(await rcpt(s.c), '550 5.7.1 Client host blocked by a DNS blocklist\r\n');
    s.c.close();

    // RBLAccept: the listing is ignored. RBLHeader is added to the listed client's messages.
    await withResults('if RBLFound then RBLAccept = true RBLHeader = "X-RBL-Listed: zen.test " .. RBLResultInfo["zen.test"] end');
    s = await connect(h.port, '127.0.0.2');
    assert.equal((await send(s.c, ['alice@localhost'], 'accepted anyway')).code, 250);
    s.c.close();
    // The same script for a client nobody lists: no header.
    s = await connect(h.port, '127.0.0.3');
    assert.equal((await send(s.c, ['alice@localhost'], 'clean client')).code, 250);
    s.c.close();
    const alice = await h.mailbox('localhost/alice');
    const accepted = alice.find((m) => m.includes('Subject: accepted anyway'))!;
    assert.match(accepted, /\r\nX-RBL-Listed: zen\.test 33554559\r\n/);
    assert.ok(accepted.indexOf('X-RBL-Listed:') < accepted.indexOf('Subject:'), 'added to the header');
    assert.doesNotMatch(alice.find((m) => m.includes('Subject: clean client'))!, /X-RBL-Listed/);

    // RBLBlackhole: accepted with 250, never delivered, nothing left in the queue.
    await withResults('RBLBlackhole = true');
    s = await connect(h.port, '127.0.0.2');
    const bh = await send(s.c, ['bob@localhost'], 'into the hole');
    assert.match(bh.raw, /^250 2\.0\.0 Ok: queued as /);
    s.c.close();
    await h.settle();
    assert.deepEqual(await h.mailbox('localhost/bob'), []);
    assert.deepEqual(await h.server.spool.list(), []);

    // RBLRedirect: the message goes to the redirect address instead of its recipients.
    await withResults('RBLRedirect = "<quarantine@localhost>"');
    s = await connect(h.port, '127.0.0.2');
    assert.equal((await send(s.c, ['carol@localhost', 'dave@localhost'], 'redirected')).code, 250);
    s.c.close();
    const q = await h.mailbox('localhost/quarantine');
    assert.equal(q.length, 1);
    assert.match(q[0], /Subject: redirected/);
    assert.deepEqual(await h.mailbox('localhost/carol'), []);
    assert.deepEqual(await h.mailbox('localhost/dave'), []);

    // RBLRejectMessage with its own code, and as bare text (550 5.7.1 is added).
    await withResults('RBLRejectMessage = "451 4.7.1 Listed, try again later"');
    s = await connect(h.port, '127.0.0.2');
    assert.equal(await rcpt(s.c), '451 4.7.1 Listed, try again later\r\n');
    s.c.close();
    await withResults('RBLRejectMessage = "Go away, you are listed"');
    s = await connect(h.port, '127.0.0.2');
    assert.equal(await rcpt(s.c), '550 5.7.1 Go away, you are listed\r\n');
    assert.equal((await s.c.cmd('RCPT TO:<postmaster@localhost>')).raw, '550 5.7.1 Go away, you are listed\r\n', 'every RCPT');
    assert.match((await s.c.cmd('DATA')).raw, /^554 /);
    s.c.close();
    // An empty RBLRejectMessage accepts.
    await withResults('RBLRejectMessage = ""');
    s = await connect(h.port, '127.0.0.2');
    assert.match(await rcpt(s.c), /^250 /);
    s.c.close();
    // Nothing above reached the queue with a remote route, and nothing is left.
    assert.deepEqual(await h.server.spool.list(), []);
  } finally {
    await h.stop();
  }
});

test('RBLResults replaces the greeting; 4xx/5xx closes; "" keeps Start\'s greeting', async () => {
  const h = await startScriptServer('', { dns: dnsConfig(), rbl: { enabled: true, servers: ['zen.test', 'other.test'], checkAll: true } });
  try {
    await h.setScript(`
      function Start() return "220 mx.test greeting from Start" end
      function RBLResults()
        if not RBLFound then return "" end
        return "554 5.7.1 Listed: zen.test=" .. RBLResultInfo["zen.test"] .. " other.test=" .. RBLResultInfo["other.test"]
      end`);
    let s = await connect(h.port, '127.0.0.2');
    assert.equal(s.greeting, '554 5.7.1 Listed: zen.test=33554559 other.test=167772287\r\n');
    await s.c.waitClosed();
    s = await connect(h.port, '127.0.0.3');
    assert.equal(s.greeting, '220 mx.test greeting from Start\r\n');
    assert.equal((await s.c.cmd('EHLO client.test')).code, 250);
    s.c.close();

    await h.setScript('function RBLResults() if RBLFound then return "421 4.7.1 Come back later" end return "" end');
    s = await connect(h.port, '127.0.0.2');
    assert.equal(s.greeting, '421 4.7.1 Come back later\r\n');
    await s.c.waitClosed();

    await h.setScript('function RBLResults() return "220-mx.test you are " .. (RBLFound and "listed" or "clean") .. "\\n220 welcome anyway" end');
    s = await connect(h.port, '127.0.0.2');
    assert.equal(s.greeting, '220-mx.test you are listed\r\n220 welcome anyway\r\n');
    assert.equal((await s.c.cmd('EHLO client.test')).code, 250, 'a 2xx greeting keeps the session open');
    s.c.close();
  } finally {
    await h.stop();
  }
});

test('IPv6 clients are looked up by reversed nibbles', async () => {
  const h = await startScriptServer(REPORT, {
    dns: dnsConfig(),
    rbl: { enabled: true, servers: ['zen.test'] },
    services: [{ id: 0, name: 'behind-proxy', listen: '127.0.0.1', port: 0, proxyProtocol: true, proxyTrusted: ['127.0.0.1/32'] }],
  });
  const proxyV2 = (src: string): Buffer =>
    Buffer.concat([
      Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x21, 0x00, 36]),
      Buffer.from(src, 'hex'),
      Buffer.alloc(16),
      Buffer.from([0x9c, 0x40, 0x00, 0x19]),
    ]);
  try {
    let c!: TestClient;
    const q = await queriesDuring(async () => {
      c = await TestClient.connect(h.port);
      c.write(proxyV2('20010db8000000000000000000000001'));
      assert.equal((await c.read()).code, 220);
    });
    assert.deepEqual(q, [`${V6_NIBBLES}.zen.test A`]);
    assert.equal((await c.cmd('NOOP')).raw, `250 found=true info=zen.test=${vpop3Number('127.0.0.4')}\r\n`);
    assert.equal(await rcpt(c), '550 5.7.1 Client host blocked by a DNS blocklist\r\n');
    c.close();

    // PROXY v1 with another IPv6 address, written in compressed form: not listed.
    const d = await TestClient.connect(h.port);
    const q2 = await queriesDuring(async () => {
      d.write('PROXY TCP6 2001:db8::2:0 ::1 40000 25\r\n');
      assert.equal((await d.read()).code, 220);
    });
    assert.deepEqual(q2, ['0.0.0.0.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.test A']);
    assert.equal((await d.cmd('NOOP')).raw, '250 found=false info=\r\n');
    assert.match(await rcpt(d), /^250 /);
    d.close();
  } finally {
    await h.stop();
  }
});

test('a recipient rewritten by DoRCPTTO (params.RCPTTO) is still refused for a listed client', async () => {
  const h = await startScriptServer(
    `function DoRCPTTO(data, rcpt, params, list) params.RCPTTO = "postmaster@localhost" return params, "" end`,
    { dns: dnsConfig(), rbl: { enabled: true, servers: ['zen.test'] } },
  );
  try {
    const s = await connect(h.port, '127.0.0.2');
    assert.equal(await rcpt(s.c), '550 5.7.1 Client host blocked by a DNS blocklist\r\n');
    s.c.close();
    const t = await connect(h.port, '127.0.0.3');
    assert.match(await rcpt(t.c), /^250 /);
    t.c.close();
  } finally {
    await h.stop();
  }
});
