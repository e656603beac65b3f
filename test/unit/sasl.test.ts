import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SaslExchange, SASL_MECHANISMS } from '../../src/smtp/sasl.js';

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const badBase64 = { kind: 'error', code: 501, enhanced: '5.5.2', text: 'Cannot decode response' };
const malformed = { kind: 'error', code: 501, enhanced: '5.5.2', text: 'Malformed PLAIN response' };
const cancelled = { kind: 'error', code: 501, enhanced: '5.0.0', text: 'Authentication cancelled' };

test('the offered mechanisms', () => {
  assert.deepEqual([...SASL_MECHANISMS], ['PLAIN', 'LOGIN', 'CRAM-MD5']);
});

test('CRAM-MD5: a challenge with the host name, then user and digest', () => {
  const x = new SaslExchange('CRAM-MD5', 'mx.test');
  const first = x.start(undefined);
  assert.equal(first.kind, 'challenge');
  const challenge = Buffer.from((first as { text: string }).text, 'base64').toString();
  assert.match(challenge, /^<[0-9a-f]{16}\.\d+@mx\.test>$/);
  const step = x.next(Buffer.from('alice 0123456789abcdef0123456789ABCDEF').toString('base64'));
  assert.deepEqual(step, { kind: 'cram', user: 'alice', digest: '0123456789abcdef0123456789abcdef', challenge });
  assert.equal(x.next(Buffer.from('alice nothex').toString('base64')).kind, 'error');
  assert.equal(new SaslExchange('CRAM-MD5').start('abc').kind, 'error', 'no initial response');
});

// ---- PLAIN ----------------------------------------------------------------------------------

test('PLAIN with an initial response', () => {
  const s = new SaslExchange('PLAIN');
  assert.deepEqual(s.start(b64('\0alice\0secret')), { kind: 'credentials', authzid: '', user: 'alice', password: 'secret' });
});

test('PLAIN with an authorization identity', () => {
  const s = new SaslExchange('PLAIN');
  assert.deepEqual(s.start(b64('admin\0alice\0pw')), { kind: 'credentials', authzid: 'admin', user: 'alice', password: 'pw' });
});

test('PLAIN without an initial response: an empty challenge, then the response', () => {
  const s = new SaslExchange('PLAIN');
  assert.deepEqual(s.start(undefined), { kind: 'challenge', text: '' });
  assert.deepEqual(s.next(b64('\0bob@example.com\0p\u00e4ss w0rd')), {
    kind: 'credentials',
    authzid: '',
    user: 'bob@example.com',
    password: 'päss w0rd',
  });
});

test('PLAIN: surrounding spaces on the response line are ignored', () => {
  const s = new SaslExchange('PLAIN');
  s.start(undefined);
  assert.equal(s.next(`  ${b64('\0u\0p')}  `).kind, 'credentials');
});

test('PLAIN: malformed contents', () => {
  for (const text of ['alice', '\0alice', '\0\0secret', 'a\0b\0c\0d', '']) {
    assert.deepEqual(new SaslExchange('PLAIN').start(b64(text)), malformed, JSON.stringify(text));
  }
});

test('PLAIN: "=" is an empty response, which is malformed', () => {
  assert.deepEqual(new SaslExchange('PLAIN').start('='), malformed);
  const s = new SaslExchange('PLAIN');
  s.start(undefined);
  assert.deepEqual(s.next('='), malformed);
});

test('PLAIN: bad base64', () => {
  for (const line of ['not base64!', 'QUJD=', 'QQ==QQ==', 'QUJ', 'QUJDRA=', '===', 'QU JD']) {
    assert.deepEqual(new SaslExchange('PLAIN').start(line), badBase64, line);
  }
});

test('PLAIN: "*" cancels', () => {
  const s = new SaslExchange('PLAIN');
  s.start(undefined);
  assert.deepEqual(s.next('*'), cancelled);
  const t = new SaslExchange('PLAIN');
  t.start(undefined);
  assert.deepEqual(t.next(' * '), cancelled);
});

// ---- LOGIN ----------------------------------------------------------------------------------

test('LOGIN in two steps', () => {
  const s = new SaslExchange('LOGIN');
  assert.deepEqual(s.start(undefined), { kind: 'challenge', text: 'VXNlcm5hbWU6' });
  assert.equal(Buffer.from('VXNlcm5hbWU6', 'base64').toString(), 'Username:');
  assert.deepEqual(s.next(b64('alice')), { kind: 'challenge', text: 'UGFzc3dvcmQ6' });
  assert.equal(Buffer.from('UGFzc3dvcmQ6', 'base64').toString(), 'Password:');
  assert.deepEqual(s.next(b64('s3cret')), { kind: 'credentials', authzid: '', user: 'alice', password: 's3cret' });
});

test('LOGIN with the user name as initial response', () => {
  const s = new SaslExchange('LOGIN');
  assert.deepEqual(s.start(b64('alice')), { kind: 'challenge', text: 'UGFzc3dvcmQ6' });
  assert.deepEqual(s.next(b64('pw')), { kind: 'credentials', authzid: '', user: 'alice', password: 'pw' });
});

test('LOGIN: "=" is an empty user name or password', () => {
  const s = new SaslExchange('LOGIN');
  s.start(undefined);
  assert.equal(s.next('=').kind, 'challenge');
  assert.deepEqual(s.next('='), { kind: 'credentials', authzid: '', user: '', password: '' });
});

test('LOGIN: a password with NUL and UTF-8 is kept whole', () => {
  const s = new SaslExchange('LOGIN');
  s.start(b64('u'));
  assert.deepEqual(s.next(b64('a\0b\u00fc')), { kind: 'credentials', authzid: '', user: 'u', password: 'a\0bü' });
});

test('LOGIN: "*" cancels at either step', () => {
  const a = new SaslExchange('LOGIN');
  a.start(undefined);
  assert.deepEqual(a.next('*'), cancelled);
  const b = new SaslExchange('LOGIN');
  b.start(b64('alice'));
  assert.deepEqual(b.next('*'), cancelled);
});

test('LOGIN: bad base64 at either step', () => {
  const a = new SaslExchange('LOGIN');
  a.start(undefined);
  assert.deepEqual(a.next('@@@@'), badBase64);
  const b = new SaslExchange('LOGIN');
  b.start(b64('alice'));
  assert.deepEqual(b.next('YWJj='), badBase64);
  assert.deepEqual(new SaslExchange('LOGIN').start('%'), badBase64);
});
