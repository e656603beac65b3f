import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { TestDnsServer } from '../helpers/dns-server.js';
import { startScriptServer, type ScriptHarness } from '../helpers/script-server.js';
import { TestClient, sendMail, message } from '../helpers/smtp-client.js';

// S15 end to end: SPF of MAIL FROM (the HELO name for <>) through a DNS server on loopback,
// the result as DoMAILFROM's 4th argument and a Received-SPF header in the stored message.

const dnsServer = new TestDnsServer();
let on: ScriptHarness;
let off: ScriptHarness;

// DoMAILFROM reports the SPF result it was given.
const SCRIPT = `
  function DoMAILFROM(data, mailfrom, params, spf, auth)
    return params, "250 2.1.0 spf=[" .. spf .. "] from=[" .. mailfrom .. "]"
  end`;

before(async () => {
  dnsServer
    .add('pass.test', 'TXT', ['v=spf1 ip4:127.0.0.0/24 -all'])
    .add('fail.test', 'TXT', ['v=spf1 ip4:192.0.2.0/24 -all'])
    .add('softfail.test', 'TXT', ['v=spf1 ip4:192.0.2.0/24 ~all'])
    .add('neutral.test', 'TXT', ['v=spf1 ?all'])
    .add('nospf.test', 'TXT', ['google-site-verification=abc'])
    .add('perm.test', 'TXT', ['v=spf1 ip4:127.0.0.1/99 -all'])
    .add('include.test', 'TXT', ['v=spf1 include:pass.test -all'])
    .add('helo-pass.test', 'TXT', ['v=spf1 ip4:127.0.0.2 -all'])
    .add('helo-fail.test', 'TXT', ['v=spf1 -all']);
  dnsServer.silent.add('slow.test');
  const addr = await dnsServer.start();
  const dns = { servers: [addr], timeoutMs: 500, tries: 1 };
  on = await startScriptServer(SCRIPT, { dns, services: [{ id: 0, name: 'mx', listen: '127.0.0.1', port: 0, spf: true }] });
  off = await startScriptServer(SCRIPT, { dns });
});
after(async () => {
  await on.stop();
  await off.stop();
  dnsServer.stop();
});

async function session(port: number, helo = 'client.test'): Promise<TestClient> {
  const c = await TestClient.connect(port, { localAddress: '127.0.0.2' });
  assert.equal((await c.read()).code, 220);
  assert.equal((await c.cmd(`EHLO ${helo}`)).code, 250);
  return c;
}

test('DoMAILFROM receives each RFC 7208 result', async () => {
  const c = await session(on.port);
  const cases: [string, string][] = [
    ['a@pass.test', 'pass'],
    ['a@include.test', 'pass'],
    ['a@fail.test', 'fail'],
    ['a@softfail.test', 'softfail'],
    ['a@neutral.test', 'neutral'],
    ['a@nospf.test', 'none'],
    ['a@no-such-domain.test', 'none'],
    ['a@perm.test', 'permerror'],
    ['a@slow.test', 'temperror'],
  ];
  for (const [from, result] of cases) {
    assert.equal((await c.cmd(`MAIL FROM:<${from}>`)).raw, `250 2.1.0 spf=[${result}] from=[${from}]\r\n`, from);
    assert.equal((await c.cmd('RSET')).code, 250);
  }
  c.close();
});

test('the Received-SPF header is stored in the delivered message', async () => {
  const c = await session(on.port);
  assert.equal((await sendMail(c, 'sender@pass.test', ['alice@localhost'], message('spf pass'))).code, 250);
  assert.equal((await sendMail(c, 'sender@fail.test', ['alice@localhost'], message('spf fail'))).code, 250);
  c.close();
  const box = await on.mailbox('localhost/alice');
  const pass = box.find((m) => m.includes('Subject: spf pass'))!;
  const head = pass.slice(0, pass.indexOf('\r\n\r\n'));
  const spf = /^Received-SPF: .*(?:\r\n[ \t].*)*/m.exec(head)?.[0];
  assert.ok(spf, head);
  assert.match(spf, /^Received-SPF: pass\b/);
  assert.match(spf, /client-ip=127\.0\.0\.2;/);
  assert.match(spf, /sender@pass\.test/);
  assert.ok(head.indexOf('Received-SPF:') < head.indexOf('From: sender@example.com'), 'a trace header, above the message header');
  const fail = box.find((m) => m.includes('Subject: spf fail'))!;
  assert.match(fail, /\r\nReceived-SPF: fail\b/);
});

test('SPF off for the service: the script gets "" and no header is added, no lookup made', async () => {
  const from = dnsServer.queries.length;
  const c = await session(off.port);
  assert.equal((await c.cmd('MAIL FROM:<a@fail.test>')).raw, '250 2.1.0 spf=[] from=[a@fail.test]\r\n');
  assert.equal((await c.cmd('RSET')).code, 250);
  assert.equal((await sendMail(c, 'a@pass.test', ['alice@localhost'], message('spf off'))).code, 250);
  c.close();
  const m = (await off.mailbox('localhost/alice')).find((x) => x.includes('Subject: spf off'))!;
  assert.doesNotMatch(m, /Received-SPF/i);
  assert.deepEqual(dnsServer.queries.slice(from), []);
});

test('the null sender <> is checked against the HELO name', async () => {
  let c = await session(on.port, 'helo-pass.test');
  assert.equal((await c.cmd('MAIL FROM:<>')).raw, '250 2.1.0 spf=[pass] from=[]\r\n');
  assert.equal((await c.cmd('RCPT TO:<alice@localhost>')).code, 250);
  assert.equal((await c.cmd('DATA')).code, 354);
  c.write(`${message('a bounce')}.\r\n`);
  assert.equal((await c.read()).code, 250);
  c.close();
  const bounce = (await on.mailbox('localhost/alice')).find((x) => x.includes('Subject: a bounce'))!;
  assert.match(bounce, /\r\nReceived-SPF: pass\b[^]*helo-pass\.test/);

  c = await session(on.port, 'helo-fail.test');
  assert.equal((await c.cmd('MAIL FROM:<>')).raw, '250 2.1.0 spf=[fail] from=[]\r\n');
  c.close();
  // The same HELO with a sender: the sender's domain decides, not the HELO name.
  c = await session(on.port, 'helo-fail.test');
  assert.equal((await c.cmd('MAIL FROM:<x@pass.test>')).raw, '250 2.1.0 spf=[pass] from=[x@pass.test]\r\n');
  c.close();
});
