import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalIp, interfaceAddresses, literalAddress } from '../../src/policy/own-addresses.js';

test('address literals: IPv4, IPv6 in any spelling, IPv4-mapped; a domain name or a bad literal is none', () => {
  assert.equal(literalAddress('[192.0.2.1]'), '192.0.2.1');
  assert.equal(literalAddress('[IPv6:2001:DB8:0:0:0:0:0:1]'), '2001:db8::1');
  assert.equal(literalAddress('[ipv6:::1]'), '::1');
  assert.equal(literalAddress('[IPv6:::ffff:127.0.0.1]'), '127.0.0.1');
  assert.equal(literalAddress('example.com'), null);
  assert.equal(literalAddress('[example.com]'), null);
  assert.equal(literalAddress('[300.1.1.1]'), null);
  assert.equal(canonicalIp('::FFFF:10.0.0.1'), '10.0.0.1');
  assert.equal(canonicalIp('fe80:0::1'), 'fe80::1');
});

test('interface addresses include the loopback address, spelled as literalAddress spells it', () => {
  const own = interfaceAddresses();
  assert.ok(own.has('127.0.0.1'), [...own].join(' '));
  for (const a of own) assert.equal(canonicalIp(a), a);
});
