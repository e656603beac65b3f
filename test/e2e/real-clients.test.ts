import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { promisify } from 'node:util';
import { startServer, type Harness } from '../helpers/harness.js';
import { makeCert } from '../helpers/tls-cert.js';
import { hashPassword } from '../../src/policy/password.js';

const run = promisify(execFile);
let h: Harness;
let cert: ReturnType<typeof makeCert>;

before(async () => {
  cert = makeCert();
  h = await startServer({
    services: [
      { id: 0, name: 'mx', listen: '127.0.0.1', port: 0, tls: 'starttls', cert: cert.cert, key: cert.key },
      { id: 1, name: 'submission', listen: '127.0.0.1', port: 0, tls: 'starttls', cert: cert.cert, key: cert.key, auth: true },
    ],
    users: [{ name: 'alice', password: await hashPassword('pw-alice'), addresses: ['alice@localhost'] }],
  });
});
after(async () => {
  await h.stop();
  rmSync(cert.dir, { recursive: true, force: true });
});

const PY_PLAIN = `
import smtplib, sys
from email.message import EmailMessage
port = int(sys.argv[1])
m = EmailMessage()
m['From'] = 'py@example.com'; m['To'] = 'pyuser@localhost'; m['Subject'] = 'from smtplib'
m.set_content('line one\\n.line starting with a dot\\n')
with smtplib.SMTP('127.0.0.1', port) as s:
    s.ehlo('python.test')
    assert s.has_extn('pipelining') and s.has_extn('chunking') and s.has_extn('smtputf8')
    refused = s.send_message(m)
    assert refused == {}, refused
    try:
        s.sendmail('py@example.com', ['nobody@remote.invalid'], 'Subject: x\\r\\n\\r\\ny')
        print('relay-accepted')
    except smtplib.SMTPRecipientsRefused as e:
        print('relay-refused', e.recipients)
print('ok')
`;

const PY_TLS_AUTH = `
import smtplib, ssl, sys
port = int(sys.argv[1])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
with smtplib.SMTP('127.0.0.1', port) as s:
    s.ehlo('python.test')
    s.starttls(context=ctx)
    s.ehlo('python.test')
    try:
        s.login('alice', 'wrong')
        print('login-accepted')
    except smtplib.SMTPAuthenticationError as e:
        print('bad-login', e.smtp_code)
    s.login('alice', 'pw-alice')
    s.sendmail('alice@localhost', ['pytls@localhost'], 'Subject: tls and auth\\r\\n\\r\\nhi\\r\\n')
print('ok')
`;

test('Python smtplib sends a message, and a relay attempt from it is refused', async () => {
  const { stdout } = await run('python3', ['-c', PY_PLAIN, String(h.ports.get(0))]);
  // 127.0.0.1 is an allowed relay client in the harness, so the remote recipient is accepted.
  assert.match(stdout, /relay-accepted\nok\n$/);
  const [m] = await h.mailbox('localhost/pyuser');
  assert.match(m, /Subject: from smtplib/);
  assert.match(m, /\r\n\.line starting with a dot\r\n/);
});

test('Python smtplib over STARTTLS with AUTH LOGIN/PLAIN', async () => {
  const { stdout } = await run('python3', ['-c', PY_TLS_AUTH, String(h.ports.get(1))]);
  assert.equal(stdout, 'bad-login 535\nok\n');
  const [m] = await h.mailbox('localhost/pytls');
  assert.match(m, /with ESMTPSA id/);
});

test('swaks: STARTTLS, AUTH PLAIN and pipelining against the submission service', async () => {
  const { stdout } = await run('swaks', [
    '--server', `127.0.0.1:${h.ports.get(1)}`, '--tls', '--auth', 'PLAIN', '--auth-user', 'alice', '--auth-password', 'pw-alice',
    '--from', 'alice@localhost', '--to', 'swaks@localhost', '--pipeline', '--header', 'Subject: via swaks',
  ]);
  assert.match(stdout, /<~\s+235 2\.7\.0 Authentication successful/);
  assert.match(stdout, /<~\s+250 2\.0\.0 Ok: queued as/);
  const [m] = await h.mailbox('localhost/swaks');
  assert.match(m, /Subject: via swaks/);
});

test('swaks: AUTH LOGIN with a wrong password fails with 535', async () => {
  const r = await run('swaks', [
    '--server', `127.0.0.1:${h.ports.get(1)}`, '--tls', '--auth', 'LOGIN', '--auth-user', 'alice', '--auth-password', 'nope',
    '--from', 'alice@localhost', '--to', 'swaks@localhost',
  ]).then(
    () => null,
    (e: { stdout: string }) => e,
  );
  assert.ok(r, 'swaks must fail');
  assert.match(r.stdout, /<~\*\s+535 5\.7\.8/);
});
