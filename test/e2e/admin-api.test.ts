import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpsRequest } from 'node:https';
import { readFileSync, rmSync } from 'node:fs';
import { startServer, type Harness } from '../helpers/harness.js';
import { makeCert } from '../helpers/tls-cert.js';
import { AdminClient, adminSection, ADMIN_PASSWORD, ADMIN_TOKEN, SseReader } from '../helpers/admin-client.js';

// The admin API's authentication: sessions, CSRF, bearer tokens, the login limit.

let h: Harness;
let anon: AdminClient;

before(async () => {
  h = await startServer({ admin: await adminSection() });
  assert.ok(h.adminPort, 'the admin API listens');
  anon = AdminClient.forPort(h.adminPort!);
});
after(() => h.stop());

/** Every route of the API, with a harmless body where one is needed. */
const ROUTES: [string, string, unknown?][] = [
  ['GET', '/api/session'],
  ['POST', '/api/logout'],
  ['GET', '/api/scripts'],
  ['GET', '/api/scripts/SMTPSVR.LUA'],
  ['POST', '/api/scripts/SMTPSVR.LUA/check', { source: 'x = 1' }],
  ['PUT', '/api/scripts/SMTPSVR.LUA', { source: 'x = 1' }],
  ['GET', '/api/scripts/SMTPSVR.LUA/history'],
  ['GET', '/api/scripts/SMTPSVR.LUA/history/20260101T000000000Z'],
  ['POST', '/api/scripts/SMTPSVR.LUA/history/20260101T000000000Z/restore'],
  ['POST', '/api/scripts/SMTPSVR.LUA/try', { transcript: 'QUIT\n' }],
  ['GET', '/api/queue'],
  ['GET', '/api/queue/counts'],
  ['GET', '/api/queue/Q1'],
  ['POST', '/api/queue/Q1/retry'],
  ['POST', '/api/queue/Q1/hold'],
  ['POST', '/api/queue/Q1/release'],
  ['POST', '/api/queue/Q1/bounce', { reason: 'no' }],
  ['DELETE', '/api/queue/Q1'],
  ['GET', '/api/live/events'],
  ['GET', '/api/live/connections'],
  ['GET', '/api/live/errors'],
  ['GET', '/api/stats'],
  ['GET', '/metrics'],
];

test('every route answers 401 without a session cookie or token, and nothing changes', async () => {
  for (const [method, path, body] of ROUTES) {
    const r = await anon.request(method, path, body);
    assert.equal(r.status, 401, `${method} ${path}`);
    assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer/);
    assert.ok(typeof r.body.error === 'string', `${method} ${path}: a JSON error`);
  }
  const sse = await SseReader.open(`${anon.base}/api/live/stream`, {});
  assert.equal(sse.status, 401);
  // The PUT above did not write a script.
  assert.equal((await AdminClient.forPort(h.adminPort!, ADMIN_TOKEN).get('/api/scripts')).body.scripts.length, 0);
});

test('a wrong or malformed bearer token is 401; a cookie does not rescue it', async () => {
  const c = AdminClient.forPort(h.adminPort!);
  assert.equal((await c.login()).status, 200);
  for (const header of ['Bearer wrong-token-0123456789', 'Bearer', `Basic ${Buffer.from('admin:x').toString('base64')}`, `Bearer ${ADMIN_TOKEN}x`]) {
    const r = await c.get('/api/session', { headers: { authorization: header } });
    assert.equal(r.status, 401, header);
  }
});

test('a bearer token reaches every route (no CSRF token needed)', async () => {
  const t = AdminClient.forPort(h.adminPort!, ADMIN_TOKEN);
  const who = await t.get('/api/session');
  assert.equal(who.status, 200);
  assert.deepEqual(who.body, { user: 'token:ci', via: 'token' });
  for (const [method, path, body] of ROUTES) {
    if (path === '/api/logout' || method === 'PUT') continue;
    const r = await t.request(method, path, body);
    assert.notEqual(r.status, 401, `${method} ${path}`);
    assert.notEqual(r.status, 403, `${method} ${path}`);
  }
  // Token case of the scheme does not matter.
  assert.equal((await t.get('/api/session', { token: null, headers: { authorization: `bearer ${ADMIN_TOKEN}` } })).status, 200);
});

test('login: session cookie HttpOnly and SameSite=Strict, CSRF token for state changes, logout', async () => {
  const c = AdminClient.forPort(h.adminPort!);
  const r = await c.login();
  assert.equal(r.status, 200);
  assert.equal(r.body.user, 'admin');
  assert.ok(r.body.csrfToken.length >= 24);
  const cookies = r.headers.getSetCookie();
  const session = cookies.find((x) => x.startsWith('moonpost_session='))!;
  assert.match(session, /; HttpOnly/);
  assert.match(session, /; SameSite=Strict/);
  assert.match(session, /; Path=\//);
  assert.doesNotMatch(session, /Secure/, 'plain HTTP: no Secure flag');
  const csrf = cookies.find((x) => x.startsWith('moonpost_csrf='))!;
  assert.doesNotMatch(csrf, /HttpOnly/, 'the page may read the CSRF cookie');
  assert.match(csrf, /SameSite=Strict/);

  const who = await c.get('/api/session');
  assert.equal(who.status, 200);
  assert.equal(who.body.user, 'admin');
  assert.equal(who.body.via, 'session');
  assert.equal(who.body.csrfToken, r.body.csrfToken);

  // A state change without the header, or with another token, is refused before it runs.
  const body = { source: 'function Start() end' };
  const missing = await c.put('/api/scripts/SMTPSVR.LUA', body, { csrf: false });
  assert.equal(missing.status, 403);
  assert.match(missing.body.error, /x-csrf-token/);
  assert.equal((await c.put('/api/scripts/SMTPSVR.LUA', body, { csrf: 'x'.repeat(32) })).status, 403);
  assert.equal((await c.post('/api/queue/Q1/hold', undefined, { csrf: false })).status, 403);
  assert.equal((await c.delete('/api/queue/Q1', { csrf: false })).status, 403);
  assert.equal((await c.post('/api/logout', undefined, { csrf: false })).status, 403);
  assert.equal((await c.get('/api/scripts')).body.scripts.length, 0, 'nothing was saved');
  // Reads need no CSRF token; with it, the change goes through.
  assert.equal((await c.get('/api/queue', { csrf: false })).status, 200);
  assert.equal((await c.post('/api/scripts/SMTPSVR.LUA/check', body)).body.ok, true);
  assert.equal((await c.post('/api/queue/Q1/hold')).status, 404);

  const out = await c.post('/api/logout');
  assert.equal(out.status, 200);
  assert.equal(c.cookies.size, 0, 'logout clears the cookies');
  // The old session id no longer works even if someone kept it.
  const replay = await anon.get('/api/session', { headers: { cookie: `moonpost_session=${session.split(';')[0].split('=')[1]}` } });
  assert.equal(replay.status, 401);
});

test('every state-changing route refuses a session without its CSRF token, and nothing changes', async () => {
  const c = AdminClient.forPort(h.adminPort!);
  assert.equal((await c.login()).status, 200);
  const changing = ROUTES.filter(([method]) => method !== 'GET');
  assert.ok(changing.length >= 10);
  for (const [method, path, body] of changing) {
    for (const csrf of [false, 'x'.repeat(32)] as const) {
      const r = await c.request(method, path, body, { csrf });
      assert.equal(r.status, 403, `${method} ${path} with csrf=${csrf}`);
    }
  }
  // Still logged in (the refused logout did not run) and no script was written.
  assert.equal((await c.get('/api/session')).status, 200);
  assert.equal((await c.get('/api/scripts')).body.scripts.length, 0);
  await c.post('/api/logout');
});

test('the console page: public at / with a strict Content-Security-Policy; API answers are never cached', async () => {
  const page = await anon.get('/');
  // Built by `npm run build` (the test script builds first); 503 with a hint otherwise.
  assert.ok(page.status === 200 || page.status === 503, String(page.status));
  assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
  const csp = page.headers.get('content-security-policy') ?? '';
  assert.match(csp, /default-src 'self'/);
  assert.match(csp, /script-src 'self'(;|$)/, 'no inline or foreign script');
  assert.match(csp, /frame-ancestors 'none'/);
  assert.equal(page.headers.get('x-frame-options'), 'DENY');
  assert.equal(page.headers.get('x-content-type-options'), 'nosniff');
  if (page.status === 200) {
    assert.match(page.body, /<script type="module" src="\/assets\/app\.js">/);
    const js = await anon.get('/assets/app.js');
    assert.equal(js.status, 200);
    assert.match(js.headers.get('content-type') ?? '', /^text\/javascript/);
    const etag = js.headers.get('etag')!;
    assert.ok(etag);
    assert.equal((await anon.get('/assets/app.js', { headers: { 'if-none-match': etag } })).status, 304);
  } else assert.match(page.body, /npm run build/);
  for (const path of ['/assets/..%2fpackage.json', '/assets/.hidden', '/assets/nothing.js', '/assets/a%2f..%2f..%2fpackage.json']) {
    assert.equal((await anon.get(path)).status, 404, path);
  }
  // The page is public; the API behind it is not, and its answers are marked not to be kept.
  const api = await AdminClient.forPort(h.adminPort!, ADMIN_TOKEN).get('/api/queue/counts');
  assert.equal(api.status, 200);
  assert.equal(api.headers.get('cache-control'), 'no-store');
  assert.equal((await anon.get('/api/queue/counts')).headers.get('cache-control'), 'no-store');
});

test('a forged or unknown session cookie is 401', async () => {
  const r = await anon.get('/api/session', { headers: { cookie: 'moonpost_session=forged' } });
  assert.equal(r.status, 401);
});

test('request bodies are checked against their schema; text/plain is not accepted', async () => {
  const t = AdminClient.forPort(h.adminPort!, ADMIN_TOKEN);
  assert.equal((await t.post('/api/scripts/SMTPSVR.LUA/check', { source: 'x = 1', extra: true })).status, 400);
  assert.equal((await t.post('/api/scripts/SMTPSVR.LUA/check', { text: 'x = 1' })).status, 400);
  const plain = await t.request('POST', '/api/scripts/SMTPSVR.LUA/check', undefined, { raw: '{"source":"x=1"}', headers: { 'content-type': 'text/plain' } });
  assert.equal(plain.status, 415);
  assert.equal((await t.get('/api/nothing-here')).status, 404);
  // Login with a missing field is a 400, not a failed login.
  assert.equal((await anon.post('/api/login', { user: 'admin' })).status, 400);
});

test('failed logins are limited per client address: 429 with Retry-After, even for the right password', async () => {
  // Its own server, so the limit does not lock out the other tests' logins.
  const other = await startServer({ admin: await adminSection({ login: { attempts: 3, windowSeconds: 60 } }) });
  try {
    const c = AdminClient.forPort(other.adminPort!);
    for (let i = 0; i < 3; i++) {
      const r = await c.login('admin', `wrong ${i}`);
      assert.equal(r.status, 401);
      assert.ok(!r.headers.getSetCookie().length, 'no cookie for a failed login');
    }
    const unknownUser = await c.login('nobody', ADMIN_PASSWORD);
    assert.equal(unknownUser.status, 429);
    const limited = await c.login();
    assert.equal(limited.status, 429);
    const wait = Number(limited.headers.get('retry-after'));
    assert.ok(wait > 0 && wait <= 60, `Retry-After ${wait}`);
    assert.equal(c.cookies.size, 0);
    // Tokens are not affected by the login limit.
    assert.equal((await AdminClient.forPort(other.adminPort!, ADMIN_TOKEN).get('/api/session')).status, 200);
  } finally {
    await other.stop();
  }
});

test('an unknown user fails like a wrong password', async () => {
  const other = await startServer({ admin: await adminSection() });
  try {
    const c = AdminClient.forPort(other.adminPort!);
    const a = await c.login('nobody', 'x');
    const b = await c.login('admin', 'x');
    assert.equal(a.status, 401);
    assert.deepEqual(a.body, b.body);
  } finally {
    await other.stop();
  }
});

test('metricsWithoutAuth opens /metrics only; /api stays closed', async () => {
  const other = await startServer({ admin: await adminSection({ metricsWithoutAuth: true }) });
  try {
    const c = AdminClient.forPort(other.adminPort!);
    const m = await c.get('/metrics');
    assert.equal(m.status, 200);
    assert.match(m.body, /moonpost_queue_messages/);
    assert.equal((await c.get('/api/stats')).status, 401);
  } finally {
    await other.stop();
  }
});

test('without an admin section no admin port is opened', async () => {
  const other = await startServer();
  try {
    assert.equal(other.adminPort, null);
    assert.equal(other.server.adminAddress, null);
  } finally {
    await other.stop();
  }
});

/** One HTTPS request trusting only the test certificate. */
function httpsJson(port: number, ca: Buffer, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; cookies: string[]; body: string }>((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', servername: 'localhost', port, method, path, ca, headers: body ? { ...headers, 'content-type': 'application/json' } : headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, cookies: res.headers['set-cookie'] ?? [], body: text }));
    });
    req.on('error', reject);
    req.end(body ? JSON.stringify(body) : undefined);
  });
}

test('admin.tls: HTTPS with the configured certificate, and Secure cookies', async () => {
  const cert = makeCert();
  const other = await startServer({ admin: await adminSection({ tls: { cert: cert.cert, key: cert.key } }) });
  try {
    const ca = readFileSync(cert.cert);
    const login = await httpsJson(other.adminPort!, ca, 'POST', '/api/login', { user: 'admin', password: ADMIN_PASSWORD });
    assert.equal(login.status, 200);
    assert.ok(login.cookies.length === 2 && login.cookies.every((c) => /; Secure/.test(c) && /SameSite=Strict/.test(c)), login.cookies.join(' | '));
    const session = login.cookies.find((c) => c.startsWith('moonpost_session='))!.split(';')[0];
    const who = await httpsJson(other.adminPort!, ca, 'GET', '/api/session', undefined, { cookie: session });
    assert.equal(who.status, 200);
    assert.equal(JSON.parse(who.body).user, 'admin');
    // Plain HTTP to the TLS port gets nothing useful.
    await assert.rejects(fetch(`http://127.0.0.1:${other.adminPort}/api/session`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }).then((r) => r.text()));
  } finally {
    await other.stop();
    rmSync(cert.dir, { recursive: true, force: true });
  }
});
