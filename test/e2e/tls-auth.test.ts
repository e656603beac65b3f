import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { startServer, type Harness } from '../helpers/harness.js';
import { TestClient, sendMail, message } from '../helpers/smtp-client.js';
import { makeCert } from '../helpers/tls-cert.js';
import { hashPassword } from '../../src/policy/password.js';

let h: Harness;
let cert: ReturnType<typeof makeCert>;
const b64 = (s: string): string => Buffer.from(s).toString('base64');

before(async () => {
  cert = makeCert();
  h = await startServer({
    services: [
      { id: 0, name: 'mx', listen: '127.0.0.1', port: 0, tls: 'starttls', cert: cert.cert, key: cert.key },
      { id: 1, name: 'submission', listen: '127.0.0.1', port: 0, tls: 'starttls', cert: cert.cert, key: cert.key, auth: true },
      { id: 2, name: 'smtps', listen: '127.0.0.1', port: 0, tls: 'implicit', cert: cert.cert, key: cert.key, auth: true },
    ],
    users: [{ name: 'alice', password: await hashPassword('s3cret'), addresses: ['alice@localhost'] }],
    relay: { networks: ['127.0.0.1/32'], mode: 'auth' },
  });
});
after(async () => {
  await h.stop();
  rmSync(cert.dir, { recursive: true, force: true });
});

async function starttls(port: number): Promise<TestClient> {
  const c = await TestClient.connect(port);
  await c.read();
  const ehlo = await c.cmd('EHLO client.test');
  assert.ok(ehlo.lines.some((l) => l.endsWith('STARTTLS')));
  assert.ok(!ehlo.lines.some((l) => l.includes('AUTH')), 'no AUTH before TLS');
  assert.match((await c.cmd('STARTTLS')).lines[0], /^220 2\.0\.0 /);
  await c.startTls();
  return c;
}

test('STARTTLS resets the session, then AUTH is offered and the Received header records TLS', async () => {
  const c = await starttls(h.ports.get(0)!);
  assert.match((await c.cmd('MAIL FROM:<a@example.com>')).lines[0], /^503 5\.5\.1 /, 'EHLO must be sent again after TLS');
  const ehlo = await c.cmd('EHLO client.test');
  assert.ok(!ehlo.lines.some((l) => l.endsWith('STARTTLS')));
  assert.ok(ehlo.lines.some((l) => l.endsWith('AUTH PLAIN LOGIN')));
  assert.match((await c.cmd('STARTTLS')).lines[0], /^503 5\.5\.1 /);
  const r = await sendMail(c, 'a@example.com', ['alice@localhost'], message('over tls'));
  assert.equal(r.code, 250);
  c.close();
  const box = await h.mailbox('localhost/alice');
  const m = box.find((x) => x.includes('over tls'))!;
  assert.match(m, /with ESMTPS id \S+\r\n\t\(version=TLSv1\.[23] cipher=\S+\)/);
});

test('commands pipelined behind STARTTLS are discarded (CVE-2011-0411)', async () => {
  const c = await TestClient.connect(h.ports.get(0)!);
  await c.read();
  await c.cmd('EHLO client.test');
  c.write('STARTTLS\r\nMAIL FROM:<injected@example.com>\r\n');
  assert.equal((await c.read()).code, 220);
  await c.startTls();
  assert.equal((await c.cmd('EHLO client.test')).code, 250);
  // Had the injected MAIL counted, this would be a nested MAIL (503).
  assert.equal((await c.cmd('MAIL FROM:<a@example.com>')).code, 250);
  c.close();
});

test('AUTH before TLS is refused with 538; STARTTLS not offered on an implicit TLS port', async () => {
  const c = await TestClient.connect(h.ports.get(0)!);
  await c.read();
  await c.cmd('EHLO client.test');
  assert.match((await c.cmd(`AUTH PLAIN ${b64('\0alice\0s3cret')}`)).lines[0], /^538 5\.7\.11 /);
  c.close();
  const s = await TestClient.connect(h.ports.get(2)!, { tls: true });
  await s.read();
  const ehlo = await s.cmd('EHLO client.test');
  assert.ok(!ehlo.lines.some((l) => l.endsWith('STARTTLS')));
  assert.match((await s.cmd('STARTTLS')).lines[0], /^503 5\.5\.1 /);
  s.close();
});

test('AUTH PLAIN and LOGIN succeed with the right password and fail with 535 5.7.8', async () => {
  const c = await starttls(h.ports.get(1)!);
  await c.cmd('EHLO client.test');
  assert.match((await c.cmd('MAIL FROM:<alice@localhost>')).lines[0], /^530 5\.7\.0 /, 'submission requires AUTH');
  assert.match((await c.cmd(`AUTH PLAIN ${b64('\0alice\0wrong')}`)).lines[0], /^535 5\.7\.8 /);
  assert.match((await c.cmd('AUTH PLAIN not-base64!')).lines[0], /^501 5\.5\.2 /);
  assert.match((await c.cmd('AUTH CRAM-SHA9')).lines[0], /^504 5\.5\.4 /);
  assert.equal((await c.cmd('AUTH LOGIN')).lines[0], `334 ${b64('Username:')}`);
  assert.equal((await c.cmd(b64('alice'))).lines[0], `334 ${b64('Password:')}`);
  assert.match((await c.cmd(b64('s3cret'))).lines[0], /^235 2\.7\.0 /);
  assert.match((await c.cmd('AUTH PLAIN')).lines[0], /^503 5\.5\.1 /, 'already authenticated');
  const r = await sendMail(c, 'alice@localhost', ['friend@remote.test'], message('from alice'));
  assert.equal(r.code, 250, 'authenticated users may relay');
  c.close();
  const queued = await h.server.spool.list();
  const env = queued.find((e) => e.sender === 'alice@localhost')!;
  assert.equal(env.client.authUser, 'alice');
});

test('AUTH PLAIN without an initial response, cancelled with *, then three failures close the session', async () => {
  const c = await TestClient.connect(h.ports.get(2)!, { tls: true });
  await c.read();
  await c.cmd('EHLO client.test');
  assert.equal((await c.cmd('AUTH PLAIN')).lines[0], '334');
  assert.match((await c.cmd('*')).lines[0], /^501 5\.0\.0 /);
  assert.equal((await c.cmd('AUTH PLAIN')).code, 334);
  assert.match((await c.cmd(b64('\0alice\0s3cret'))).lines[0], /^235 /);
  c.close();
  const d = await TestClient.connect(h.ports.get(2)!, { tls: true });
  await d.read();
  await d.cmd('EHLO client.test');
  for (let i = 0; i < 3; i++) assert.equal((await d.cmd(`AUTH PLAIN ${b64(`\0alice\0bad${i}`)}`)).code, 535);
  await d.waitClosed();
});

test('relay mode "auth": an unauthenticated client inside the networks cannot relay', async () => {
  const c = await starttls(h.ports.get(0)!);
  await c.cmd('EHLO client.test');
  await c.cmd('MAIL FROM:<a@example.com>');
  assert.match((await c.cmd('RCPT TO:<x@remote.test>')).lines[0], /^554 5\.7\.1 /);
  c.close();
});
