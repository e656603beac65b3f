import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { TestDnsServer } from '../helpers/dns-server.js';
import { DnsResolver } from '../../src/dns/resolver.js';
import { checkRbl, matchesWildcard, reverseName, vpop3Number } from '../../src/policy/dnsbl.js';
import { checkSpf } from '../../src/policy/spf.js';
import { Batv } from '../../src/policy/batv.js';

const dnsServer = new TestDnsServer();
let dns: DnsResolver;

before(async () => {
  dnsServer
    .add('2.0.0.127.zen.test', 'A', '127.0.0.2')
    .add('2.0.0.127.other.test', 'A', '127.0.0.10')
    .add('1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.test', 'A', '127.0.0.4')
    .add('pass.test', 'TXT', ['v=spf1 ip4:127.0.0.0/8 -all'])
    .add('fail.test', 'TXT', ['v=spf1 ip4:192.0.2.0/24 -all'])
    .add('softfail.test', 'TXT', ['v=spf1 ~all'])
    .add('neutral.test', 'TXT', ['v=spf1 ?all'])
    .add('nospf.test', 'TXT', ['just some text'])
    .add('perm.test', 'TXT', ['v=spf1 ip4:127.0.0.1/99 -all'])
    .add('helo.test', 'TXT', ['v=spf1 ip4:127.0.0.9 -all']);
  dnsServer.silent.add('slow.test');
  dnsServer.silent.add('2.0.0.127.slowbl.test');
  const server = await dnsServer.start();
  dns = new DnsResolver({ servers: [server], timeoutMs: 300, tries: 1 });
});
after(() => dnsServer.stop());

test('reverse query names: IPv4 octets, IPv6 nibbles, mapped addresses', () => {
  assert.equal(reverseName('192.0.2.99'), '99.2.0.192');
  assert.equal(reverseName('::ffff:10.1.2.3'), '3.2.1.10');
  assert.equal(reverseName('2001:db8::1'), '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2');
  assert.equal(reverseName('nonsense'), null);
});

test('VPOP3 byte order: 127.0.0.1 is 16777343', () => {
  assert.equal(vpop3Number('127.0.0.1'), 16777343);
  assert.equal(vpop3Number('127.0.0.2'), 0x0200007f);
});

test('whitelist wildcards', () => {
  assert.ok(matchesWildcard('192.168.1.7', ['10.*', '192.168.*']));
  assert.ok(matchesWildcard('10.0.0.5', ['10.0.0.?']));
  assert.ok(!matchesWildcard('10.0.0.55', ['10.0.0.?']));
  assert.ok(!matchesWildcard('1922.168.1.1', ['192.168.*']));
});

test('RBL: listed, not listed, several zones with and without checkAll, IPv6, timeout', async () => {
  const listed = await checkRbl(dns, '127.0.0.2', ['zen.test'], { checkAll: false, deadlineMs: 2000 });
  assert.deepEqual(listed, { found: true, info: { 'zen.test': vpop3Number('127.0.0.2') }, failed: [] });
  const clean = await checkRbl(dns, '127.0.0.3', ['zen.test', 'other.test'], { checkAll: true, deadlineMs: 2000 });
  assert.deepEqual(clean, { found: false, info: {}, failed: [] });
  const all = await checkRbl(dns, '127.0.0.2', ['zen.test', 'other.test'], { checkAll: true, deadlineMs: 2000 });
  assert.deepEqual(all.info, { 'zen.test': 0x0200007f, 'other.test': 0x0a00007f });
  const first = await checkRbl(dns, '127.0.0.2', ['zen.test', 'other.test'], { checkAll: false, deadlineMs: 2000 });
  assert.equal(Object.keys(first.info).length >= 1, true);
  assert.equal(first.found, true);
  const v6 = await checkRbl(dns, '2001:db8::1', ['zen.test'], { checkAll: false, deadlineMs: 2000 });
  assert.deepEqual(v6.info, { 'zen.test': vpop3Number('127.0.0.4') });
  const t0 = Date.now();
  const slow = await checkRbl(dns, '127.0.0.2', ['slowbl.test'], { checkAll: true, deadlineMs: 150 });
  assert.ok(Date.now() - t0 < 1000, 'one deadline bounds the lookups');
  assert.deepEqual(slow, { found: false, info: {}, failed: ['slowbl.test'] });
});

test('SPF over the RFC 7208 results, through our resolver', async () => {
  const run = (sender: string, helo = 'client.test') => checkSpf(dns, { ip: '127.0.0.1', sender, helo, hostname: 'mx.test' });
  assert.equal((await run('a@pass.test')).result, 'pass');
  assert.equal((await run('a@fail.test')).result, 'fail');
  assert.equal((await run('a@softfail.test')).result, 'softfail');
  assert.equal((await run('a@neutral.test')).result, 'neutral');
  assert.equal((await run('a@nospf.test')).result, 'none');
  assert.equal((await run('a@perm.test')).result, 'permerror');
  assert.equal((await run('a@slow.test')).result, 'temperror');
  // The null sender is checked against the HELO name.
  assert.equal((await run('', 'helo.test')).result, 'fail');
  const h = (await run('a@pass.test')).header;
  assert.match(h, /^Received-SPF: pass .*client-ip=127\.0\.0\.1;/s);
});

test('BATV: sign, verify, strip; forged, expired and unknown-key tags fail', () => {
  let now = Date.UTC(2026, 10, 22);
  const batv = new Batv([{ id: 0, secret: 'old' }, { id: 1, secret: 'new' }], 7, () => now);
  const tagged = batv.sign('Alice@example.test');
  assert.match(tagged, /^prvs=1\d{3}[0-9a-f]{6}=Alice@example\.test$/);
  assert.equal(batv.verify(tagged), 'Alice@example.test');
  assert.equal(batv.verify(tagged.replace(/=([0-9a-f])/, (_m, c: string) => `=${c === '0' ? '1' : '0'}`)), null, 'forged');
  assert.equal(batv.verify('alice@example.test'), null, 'untagged');
  assert.equal(batv.verify(tagged.replace('prvs=1', 'prvs=7')), null, 'unknown key');
  now += 8 * 86_400_000;
  assert.equal(batv.verify(tagged), null, 'expired');
  now -= 2 * 86_400_000;
  assert.equal(batv.verify(tagged), 'Alice@example.test', 'still valid on day 6');
  // Old keys still verify their own tags.
  const old = new Batv([{ id: 0, secret: 'old' }], 7, () => now).sign('bob@example.test');
  assert.equal(batv.verify(old), 'bob@example.test');
});
