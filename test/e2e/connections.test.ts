import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../helpers/harness.js';
import { TestClient, openSession, message } from '../helpers/smtp-client.js';

test('PROXY v1 from a trusted source sets the client address', async () => {
  const h = await startServer({
    services: [{ id: 0, name: 'behind-proxy', listen: '127.0.0.1', port: 0, proxyProtocol: true, proxyTrusted: ['127.0.0.1/32'] }],
    relay: { networks: ['10.1.0.0/16'], mode: 'ip' },
  });
  try {
    const c = await TestClient.connect(h.port);
    c.write('PROXY TCP4 10.1.2.3 127.0.0.1 40000 25\r\n');
    assert.equal((await c.read()).code, 220);
    const ehlo = await c.cmd('EHLO client.test');
    assert.equal(ehlo.lines[0], '250-mx.test Hello client.test [10.1.2.3]');
    await c.cmd('MAIL FROM:<a@example.com>');
    assert.equal((await c.cmd('RCPT TO:<x@remote.test>')).code, 250, '10.1.2.3 is inside the relay networks');
    c.close();
    // A PROXY v2 header for an IPv6 client.
    const v2 = Buffer.concat([
      Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x21, 0x00, 36]),
      Buffer.from('20010db8000000000000000000000001', 'hex'),
      Buffer.alloc(16),
      Buffer.from([0x9c, 0x40, 0x00, 0x19]),
    ]);
    const d = await TestClient.connect(h.port);
    d.write(v2);
    assert.equal((await d.read()).code, 220);
    assert.equal((await d.cmd('EHLO v6.test')).lines[0], '250-mx.test Hello v6.test [2001:db8::1]');
    d.close();
    // Garbage instead of a header closes the connection.
    const e = await TestClient.connect(h.port);
    e.write('EHLO no-proxy.test\r\n');
    await e.waitClosed();
  } finally {
    await h.stop();
  }
});

test('PROXY v2 with large TLVs arriving in small pieces is read whole', async () => {
  const h = await startServer({
    services: [{ id: 0, name: 'behind-proxy', listen: '127.0.0.1', port: 0, proxyProtocol: true, proxyTrusted: ['127.0.0.1/32'] }],
  });
  try {
    // PP2_TYPE_UNIQUE_ID-like TLV (0x05) of 1,000 octets after an IPv4 address block.
    const tlv = Buffer.concat([Buffer.from([0x05, 0x03, 0xe8]), Buffer.alloc(1000, 0x61)]);
    const body = Buffer.concat([Buffer.from([10, 7, 7, 7, 127, 0, 0, 1, 0x9c, 0x40, 0x00, 0x19]), tlv]);
    const head = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, body.length >> 8, body.length & 0xff]);
    const all = Buffer.concat([head, body]);
    const c = await TestClient.connect(h.port);
    for (let i = 0; i < all.length; i += 100) {
      c.write(all.subarray(i, i + 100));
      await new Promise((r) => setTimeout(r, 2));
    }
    assert.equal((await c.read()).code, 220);
    assert.equal((await c.cmd('EHLO big-tlv.test')).lines[0], '250-mx.test Hello big-tlv.test [10.7.7.7]');
    c.close();
  } finally {
    await h.stop();
  }
});

test('PROXY from an untrusted source is not honoured: the header is just a bad command', async () => {
  const h = await startServer({
    services: [{ id: 0, name: 'p', listen: '127.0.0.1', port: 0, proxyProtocol: true, proxyTrusted: ['192.0.2.0/24'] }],
  });
  try {
    const c = await TestClient.connect(h.port);
    assert.equal((await c.read()).code, 220);
    assert.match((await c.cmd('PROXY TCP4 10.9.9.9 127.0.0.1 1 25')).lines[0], /^500 /);
    assert.match((await c.cmd('EHLO x.test')).lines[0], /\[127\.0\.0\.1\]$/);
    c.close();
  } finally {
    await h.stop();
  }
});

test('connections over the per-address limit get 421 4.7.0', async () => {
  const h = await startServer({ limits: { connectionsPerIp: 2 } });
  try {
    const a = await TestClient.connect(h.port);
    const b = await TestClient.connect(h.port);
    assert.equal((await a.read()).code, 220);
    assert.equal((await b.read()).code, 220);
    const c = await TestClient.connect(h.port);
    assert.match((await c.read()).lines[0], /^421 4\.7\.0 .*Too many connections from your address/);
    await c.waitClosed();
    // Another address still gets in.
    const d = await TestClient.connect(h.port, { localAddress: '127.0.0.9' });
    assert.equal((await d.read()).code, 220);
    a.close();
    await new Promise((r) => setTimeout(r, 100));
    const e = await TestClient.connect(h.port);
    assert.equal((await e.read()).code, 220, 'a freed slot is reusable');
    for (const x of [b, d, e]) x.close();
  } finally {
    await h.stop();
  }
});

test('an idle client is timed out with 421 4.4.2', async () => {
  const h = await startServer({ limits: { timeouts: { command: 0.3 } } });
  try {
    const c = await openSession(h.port);
    const r = await c.read(3000);
    assert.match(r.lines[0], /^421 4\.4\.2 /);
    await c.waitClosed();
  } finally {
    await h.stop();
  }
});

test('a client stalling in DATA is timed out and nothing is stored', async () => {
  const h = await startServer({ limits: { timeouts: { data: 0.3 } } });
  try {
    const c = await openSession(h.port);
    await c.cmd('MAIL FROM:<a@example.com>');
    await c.cmd('RCPT TO:<slow@localhost>');
    await c.cmd('DATA');
    c.write('Subject: slow\r\n\r\nhalf a message');
    assert.match((await c.read(3000)).lines[0], /^421 4\.4\.2 /);
    await c.waitClosed();
    assert.deepEqual(await h.mailbox('localhost/slow'), []);
    assert.deepEqual(await h.server.spool.list(), []);
  } finally {
    await h.stop();
  }
});

test('shutdown: an idle session gets 421 at once, a session in DATA finishes its message first', async () => {
  const h = await startServer();
  const idle = await openSession(h.port);
  const busy = await openSession(h.port);
  await busy.cmd('MAIL FROM:<a@example.com>');
  await busy.cmd('RCPT TO:<drain@localhost>');
  await busy.cmd('DATA');
  busy.write('Subject: in flight\r\n\r\n');
  const stopping = h.server.stop(5000);
  assert.match((await idle.read()).lines[0], /^421 4\.3\.2 /);
  await idle.waitClosed();
  busy.write(`${message('in flight').split('\r\n\r\n')[1]}.\r\n`);
  assert.equal((await busy.read()).code, 250, 'the message in flight is accepted');
  assert.match((await busy.read()).lines[0], /^421 4\.3\.2 /);
  await busy.waitClosed();
  await stopping;
  const box = await h.mailbox('localhost/drain');
  assert.equal(box.length, 1);
  await h.stop();
});

test('shutdown deadline: a session that does not finish gets 421 and its message is dropped', async () => {
  const h = await startServer();
  const c = await openSession(h.port);
  await c.cmd('MAIL FROM:<a@example.com>');
  await c.cmd('RCPT TO:<late@localhost>');
  await c.cmd('DATA');
  c.write('Subject: never finished\r\n\r\n');
  await h.server.stop(200);
  assert.match((await c.read()).lines[0], /^421 4\.3\.2 /);
  await c.waitClosed();
  assert.deepEqual(await h.server.spool.list(), []);
  await h.stop();
});
