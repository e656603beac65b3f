import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NetworkList, normalizeIp, parseCidr } from '../../src/policy/cidr.js';

test('parseCidr: IPv4 and IPv6 networks', () => {
  assert.deepEqual(parseCidr('10.0.0.0/8'), { address: '10.0.0.0', prefix: 8, family: 'ipv4' });
  assert.deepEqual(parseCidr('2001:db8::/32'), { address: '2001:db8::', prefix: 32, family: 'ipv6' });
  assert.deepEqual(parseCidr(' 192.0.2.1/32 '), { address: '192.0.2.1', prefix: 32, family: 'ipv4' });
  assert.deepEqual(parseCidr('0.0.0.0/0'), { address: '0.0.0.0', prefix: 0, family: 'ipv4' });
  assert.deepEqual(parseCidr('::/0'), { address: '::', prefix: 0, family: 'ipv6' });
});

test('parseCidr: a bare address is a single host', () => {
  assert.deepEqual(parseCidr('127.0.0.1'), { address: '127.0.0.1', prefix: 32, family: 'ipv4' });
  assert.deepEqual(parseCidr('::1'), { address: '::1', prefix: 128, family: 'ipv6' });
});

test('parseCidr: bad networks', () => {
  for (const s of [
    '',
    '/8',
    '10.0.0.0/33',
    '::/129',
    '10.0.0.0/-1',
    '10.0.0.0/+8',
    '10.0.0.0/8.0',
    '10.0.0.0/ 8',
    '10.0.0.0/8/8',
    '10.0.0.0/x',
    '10.0.0/8',
    '256.0.0.0/8',
    'example.com/24',
    '10.0.0.0/1e1',
    '10.0.0.0/0x8',
  ]) {
    assert.equal(parseCidr(s), null, JSON.stringify(s));
  }
});

test('parseCidr: an empty prefix is refused, not read as /0', () => {
  assert.equal(parseCidr('127.0.0.1/'), null);
  assert.equal(parseCidr('::1/'), null);
  assert.throws(() => new NetworkList(['127.0.0.1/']), /not an IP network: 127\.0\.0\.1\//);
});

test('normalizeIp: IPv4-mapped IPv6 becomes IPv4; everything else is kept', () => {
  assert.equal(normalizeIp('::ffff:192.0.2.1'), '192.0.2.1');
  assert.equal(normalizeIp('::FFFF:192.0.2.1'), '192.0.2.1');
  assert.equal(normalizeIp('192.0.2.1'), '192.0.2.1');
  assert.equal(normalizeIp('::1'), '::1');
  assert.equal(normalizeIp('2001:db8::1'), '2001:db8::1');
  assert.equal(normalizeIp('::ffff:c000:201'), '::ffff:c000:201');
  assert.equal(normalizeIp('::ffff:192.0.2'), '::ffff:192.0.2');
  assert.equal(normalizeIp('::fffe:192.0.2.1'), '::fffe:192.0.2.1');
});

test('NetworkList: IPv4 membership at the edges of a network', () => {
  const list = new NetworkList(['192.0.2.0/24', '10.1.2.3']);
  assert.equal(list.empty, false);
  for (const ip of ['192.0.2.0', '192.0.2.1', '192.0.2.255', '10.1.2.3']) assert.equal(list.has(ip), true, ip);
  for (const ip of ['192.0.1.255', '192.0.3.0', '10.1.2.4', '10.1.2.2', '8.8.8.8']) assert.equal(list.has(ip), false, ip);
});

test('NetworkList: a network written with host bits set covers the whole network', () => {
  const list = new NetworkList(['10.1.2.3/8']);
  assert.equal(list.has('10.255.0.1'), true);
  assert.equal(list.has('11.0.0.0'), false);
});

test('NetworkList: IPv6 membership', () => {
  const list = new NetworkList(['2001:db8::/32', '::1/128']);
  assert.equal(list.has('2001:db8::1'), true);
  assert.equal(list.has('2001:db8:ffff:ffff:ffff:ffff:ffff:ffff'), true);
  assert.equal(list.has('2001:db9::'), false);
  assert.equal(list.has('::1'), true);
  assert.equal(list.has('::2'), false);
  assert.equal(list.has('127.0.0.1'), false);
});

test('NetworkList: IPv4-mapped client addresses match IPv4 networks', () => {
  const list = new NetworkList(['127.0.0.1/32']);
  assert.equal(list.has('::ffff:127.0.0.1'), true);
  assert.equal(list.has('::FFFF:127.0.0.1'), true);
  assert.equal(list.has('::ffff:127.0.0.2'), false);
});

test('NetworkList: garbage and empty lists', () => {
  const list = new NetworkList(['0.0.0.0/0']);
  assert.equal(list.has('1.2.3.4'), true);
  assert.equal(list.has('not an ip'), false);
  assert.equal(list.has(''), false);
  assert.equal(list.has('::1'), false);
  const none = new NetworkList([]);
  assert.equal(none.empty, true);
  assert.equal(none.has('127.0.0.1'), false);
  assert.throws(() => new NetworkList(['10.0.0.0/8', 'bogus']), /not an IP network: bogus/);
});
