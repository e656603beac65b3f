import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { TestDnsServer } from '../helpers/dns-server.js';
import { DnsResolver } from '../../src/dns/resolver.js';
import { asciiDomain, lookupMx, mxTargets, parseAddressLiteral, type MxResult, type MxRoute } from '../../src/delivery/mx.js';

const dnsServer = new TestDnsServer();
let dns: DnsResolver;

const mx = (preference: number, exchange: string): { preference: number; exchange: string } => ({ preference, exchange });

before(async () => {
  dnsServer
    // Preferences out of order, two at 10, one host without addresses.
    .add('multi.test', 'MX', mx(20, 'c.multi.test'), mx(10, 'a.multi.test'), mx(10, 'b.multi.test'), mx(30, 'gone.multi.test'))
    .add('a.multi.test', 'A', '192.0.2.1')
    .add('a.multi.test', 'AAAA', '2001:db8::1')
    .add('b.multi.test', 'A', '192.0.2.2', '192.0.2.3')
    .add('c.multi.test', 'AAAA', '2001:db8::3')
    // No MX: implicit MX to the domain's own addresses.
    .add('implicit.test', 'A', '192.0.2.10')
    .add('implicit.test', 'TXT', ['v=spf1 -all'])
    .add('v6only.test', 'AAAA', '2001:db8::10')
    // Exists, but neither MX nor address.
    .add('empty.test', 'TXT', ['nothing here'])
    // RFC 7505 null MX.
    .add('nullmx.test', 'MX', mx(0, '.'))
    .add('nullmx.test', 'A', '192.0.2.99')
    // A null MX beside real ones is ignored.
    .add('mixed.test', 'MX', mx(0, '.'), mx(10, 'a.multi.test'))
    // MX hosts that do not resolve.
    .add('dangling.test', 'MX', mx(10, 'nowhere.dangling.test'), mx(20, 'empty.test'))
    .add('slowhost.test', 'MX', mx(10, 'slow.slowhost.test'), mx(20, 'nowhere.slowhost.test'))
    .add('partial.test', 'MX', mx(10, 'slow.slowhost.test'), mx(20, 'b.multi.test'))
    .add('ipmx.test', 'MX', mx(10, '192.0.2.7'))
    // This server among the MX hosts.
    .add('loop.test', 'MX', mx(10, 'mail.self.test'), mx(20, 'b.multi.test'))
    .add('backup.test', 'MX', mx(5, 'a.multi.test'), mx(10, 'mail.self.test'), mx(20, 'b.multi.test'))
    .add('xn--bcher-kva.test', 'MX', mx(10, 'a.multi.test'));
  dnsServer.silent.add('slow.test');
  dnsServer.silent.add('slow.slowhost.test');
  dnsServer.rcodes.set('servfail.test', 2);
  const server = await dnsServer.start();
  dns = new DnsResolver({ servers: [server], timeoutMs: 200, tries: 1 });
});
after(() => dnsServer.stop());

function route(r: MxResult): MxRoute {
  assert.equal(r.kind, 'route', JSON.stringify(r));
  return r as MxRoute;
}

test('MX hosts in preference order, each with its A and AAAA addresses', async () => {
  const r = route(await lookupMx(dns, 'multi.test', { random: () => 0.99 }));
  assert.equal(r.source, 'mx');
  assert.deepEqual(
    r.hosts.map((h) => [h.name, h.preference]),
    [
      ['a.multi.test', 10],
      ['b.multi.test', 10],
      ['c.multi.test', 20],
      ['gone.multi.test', 30],
    ],
  );
  assert.deepEqual(r.hosts[0].addresses, [
    { address: '192.0.2.1', family: 4 },
    { address: '2001:db8::1', family: 6 },
  ]);
  assert.deepEqual(r.hosts[3], { name: 'gone.multi.test', preference: 30, addresses: [], error: { temporary: false, message: 'host gone.multi.test not found' } });
  assert.deepEqual(
    [...mxTargets(r)].map((t) => `${t.host} ${t.address}`),
    ['a.multi.test 192.0.2.1', 'a.multi.test 2001:db8::1', 'b.multi.test 192.0.2.2', 'b.multi.test 192.0.2.3', 'c.multi.test 2001:db8::3'],
  );
});

test('equal preferences come in random order, others never move', async () => {
  const firsts = new Set<string>();
  for (const v of [0, 0.99]) {
    const r = route(await lookupMx(dns, 'multi.test', { random: () => v }));
    firsts.add(r.hosts[0].name);
    assert.deepEqual(r.hosts.slice(2).map((h) => h.name), ['c.multi.test', 'gone.multi.test']);
  }
  assert.deepEqual([...firsts].sort(), ['a.multi.test', 'b.multi.test']);
});

test('address families, order and the host limit', async () => {
  const v6first = route(await lookupMx(dns, 'multi.test', { random: () => 0.99, addressOrder: 'ipv6-first' }));
  assert.deepEqual(v6first.hosts[0].addresses.map((a) => a.family), [6, 4]);
  const v4 = route(await lookupMx(dns, 'multi.test', { random: () => 0.99, families: 'ipv4' }));
  assert.deepEqual([...mxTargets(v4)].map((t) => t.address), ['192.0.2.1', '192.0.2.2', '192.0.2.3']);
  assert.equal(v4.hosts[2].error?.message, 'host c.multi.test has no address record');
  const limited = route(await lookupMx(dns, 'multi.test', { random: () => 0.99, maxHosts: 2 }));
  assert.deepEqual(limited.hosts.map((h) => h.name), ['a.multi.test', 'b.multi.test']);
});

test('no MX: the domain itself (implicit MX, RFC 5321 §5.1)', async () => {
  const r = route(await lookupMx(dns, 'Implicit.Test.'));
  assert.equal(r.source, 'implicit');
  assert.deepEqual(r.hosts, [{ name: 'implicit.test', preference: 0, addresses: [{ address: '192.0.2.10', family: 4 }] }]);
  const v6 = route(await lookupMx(dns, 'v6only.test'));
  assert.deepEqual([...mxTargets(v6)].map((t) => t.address), ['2001:db8::10']);
  assert.deepEqual(await lookupMx(dns, 'v6only.test', { families: 'ipv4' }), {
    kind: 'permanent',
    domain: 'v6only.test',
    status: '5.4.4',
    message: 'domain v6only.test has no MX record and no address record',
  });
  assert.equal((await lookupMx(dns, 'empty.test')).kind, 'permanent');
});

test('null MX (RFC 7505) is a permanent 5.1.10, without falling back to A', async () => {
  assert.deepEqual(await lookupMx(dns, 'nullmx.test'), {
    kind: 'permanent',
    domain: 'nullmx.test',
    status: '5.1.10',
    message: 'domain nullmx.test does not accept mail (null MX)',
  });
  assert.ok(!dnsServer.queries.includes('nullmx.test A'));
  const mixed = route(await lookupMx(dns, 'mixed.test'));
  assert.deepEqual(mixed.hosts.map((h) => h.name), ['a.multi.test']);
});

test('NXDOMAIN is permanent 5.1.2; timeouts and SERVFAIL temporary 4.4.3', async () => {
  assert.deepEqual(await lookupMx(dns, 'nosuch.test'), { kind: 'permanent', domain: 'nosuch.test', status: '5.1.2', message: 'domain nosuch.test not found' });
  const slow = await lookupMx(dns, 'slow.test');
  assert.equal(slow.kind, 'temporary');
  assert.equal((slow as { status: string }).status, '4.4.3');
  assert.match((slow as { message: string }).message, /ETIMEOUT/);
  const sf = await lookupMx(dns, 'servfail.test');
  assert.equal(sf.kind, 'temporary');
  assert.match((sf as { message: string }).message, /ESERVFAIL/);
});

test('MX hosts without addresses: permanent when none exists, temporary when a lookup failed, usable when one resolves', async () => {
  const dangling = await lookupMx(dns, 'dangling.test');
  assert.equal(dangling.kind, 'permanent');
  assert.equal((dangling as { status: string }).status, '5.4.4');
  assert.match((dangling as { message: string }).message, /nowhere\.dangling\.test not found; host empty\.test has no address record/);
  const slow = await lookupMx(dns, 'slowhost.test');
  assert.equal(slow.kind, 'temporary');
  assert.equal((slow as { status: string }).status, '4.4.3');
  const partial = route(await lookupMx(dns, 'partial.test'));
  assert.equal(partial.hosts[0].error?.temporary, true);
  assert.deepEqual([...mxTargets(partial)].map((t) => t.host), ['b.multi.test', 'b.multi.test']);
  const ipmx = await lookupMx(dns, 'ipmx.test');
  assert.equal(ipmx.kind, 'permanent');
  assert.match((ipmx as { message: string }).message, /is an IP address/);
});

test('address literals are used as they are', async () => {
  const before = dnsServer.queries.length;
  const v4 = route(await lookupMx(dns, '[192.0.2.55]'));
  assert.deepEqual(v4, { kind: 'route', domain: '[192.0.2.55]', source: 'literal', hosts: [{ name: '[192.0.2.55]', preference: 0, addresses: [{ address: '192.0.2.55', family: 4 }] }] });
  const v6 = route(await lookupMx(dns, '[IPv6:2001:db8::5]'));
  assert.deepEqual(v6.hosts[0].addresses, [{ address: '2001:db8::5', family: 6 }]);
  assert.equal(dnsServer.queries.length, before, 'no DNS query');
  for (const bad of ['[192.0.2.300]', '[2001:db8::5]', '[IPv6:192.0.2.1]', '[abc']) {
    const r = await lookupMx(dns, bad);
    assert.equal(r.kind, 'permanent', bad);
    assert.equal((r as { status: string }).status, '5.1.2');
  }
  assert.equal((await lookupMx(dns, '[IPv6:2001:db8::5]', { families: 'ipv4' })).kind, 'permanent');
  assert.equal(parseAddressLiteral('example.com'), undefined);
});

test('this server as MX: only more preferred hosts, none left is a loop (5.4.6)', async () => {
  const loop = await lookupMx(dns, 'loop.test', { localNames: ['MAIL.self.test.'] });
  assert.deepEqual(loop, { kind: 'permanent', domain: 'loop.test', status: '5.4.6', message: 'mail for loop.test loops back to myself' });
  const backup = route(await lookupMx(dns, 'backup.test', { localNames: ['mail.self.test'] }));
  assert.deepEqual(backup.hosts.map((h) => h.name), ['a.multi.test']);
  const other = route(await lookupMx(dns, 'loop.test', { localNames: ['elsewhere.test'] }));
  assert.equal(other.hosts.length, 2);
});

test('internationalized and malformed domains', async () => {
  assert.equal(asciiDomain('Bücher.test'), 'xn--bcher-kva.test');
  const idn = route(await lookupMx(dns, 'bücher.test'));
  assert.deepEqual(idn.hosts.map((h) => h.name), ['a.multi.test']);
  for (const bad of ['', 'a..test', 'sp ace.test', '-lead.test', 'x'.repeat(64) + '.test']) {
    const r = await lookupMx(dns, bad);
    assert.equal(r.kind, 'permanent', bad);
    assert.equal((r as { status: string }).status, '5.1.2');
  }
});
