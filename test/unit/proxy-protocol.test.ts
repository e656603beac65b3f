import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseProxyHeader } from '../../src/smtp/proxy-protocol.js';
import { normalizeIp } from '../../src/policy/cidr.js';

const SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

/** A v2 header: signature, version/command byte, family/transport byte, length, body. */
function v2(verCmd: number, famProto: number, body: Buffer, lengthOverride?: number): Buffer {
  const head = Buffer.alloc(4);
  head[0] = verCmd;
  head[1] = famProto;
  head.writeUInt16BE(lengthOverride ?? body.length, 2);
  return Buffer.concat([SIG, head, body]);
}

function ipv4Body(src: number[], dst: number[], sport: number, dport: number): Buffer {
  const b = Buffer.alloc(12);
  Buffer.from(src).copy(b, 0);
  Buffer.from(dst).copy(b, 4);
  b.writeUInt16BE(sport, 8);
  b.writeUInt16BE(dport, 10);
  return b;
}

function ipv6Body(src: number[], dst: number[], sport: number, dport: number): Buffer {
  const b = Buffer.alloc(36);
  src.forEach((g, i) => b.writeUInt16BE(g, i * 2));
  dst.forEach((g, i) => b.writeUInt16BE(g, 16 + i * 2));
  b.writeUInt16BE(sport, 32);
  b.writeUInt16BE(dport, 34);
  return b;
}

const ascii = (s: string): Buffer => Buffer.from(s, 'latin1');

// ---- v1 -----------------------------------------------------------------------------------

test('v1 TCP4', () => {
  const header = 'PROXY TCP4 192.0.2.10 198.51.100.1 56324 25\r\n';
  assert.deepEqual(parseProxyHeader(ascii(header)), { state: 'done', info: { ip: '192.0.2.10', port: 56324 }, consumed: header.length });
});

test('v1: the bytes after the header are not consumed', () => {
  const header = 'PROXY TCP4 192.0.2.10 198.51.100.1 1 25\r\n';
  const r = parseProxyHeader(ascii(`${header}EHLO client\r\n`));
  assert.equal(r.state, 'done');
  assert.equal(r.state === 'done' && r.consumed, header.length);
});

test('v1 TCP6', () => {
  const header = 'PROXY TCP6 2001:db8::1 2001:db8::2 65535 587\r\n';
  assert.deepEqual(parseProxyHeader(ascii(header)), { state: 'done', info: { ip: '2001:db8::1', port: 65535 }, consumed: header.length });
  const mapped = parseProxyHeader(ascii('PROXY TCP6 ::ffff:192.0.2.7 ::ffff:192.0.2.8 1000 25\r\n'));
  assert.ok(mapped.state === 'done' && mapped.info);
  assert.equal(normalizeIp(mapped.info.ip), '192.0.2.7');
});

test('v1 UNKNOWN, with or without addresses: the connection address stands', () => {
  assert.deepEqual(parseProxyHeader(ascii('PROXY UNKNOWN\r\n')), { state: 'done', info: null, consumed: 15 });
  const long = 'PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n';
  assert.deepEqual(parseProxyHeader(ascii(long)), { state: 'done', info: null, consumed: long.length });
});

test('v1: every proper prefix of a header needs more', () => {
  const header = 'PROXY TCP4 192.0.2.10 198.51.100.1 56324 25\r\n';
  for (let n = 0; n < header.length; n++) {
    assert.deepEqual(parseProxyHeader(ascii(header.slice(0, n))), { state: 'need-more' }, `prefix of ${n}`);
  }
});

test('v1: garbage is an error', () => {
  for (const s of [
    'EHLO client.example\r\n',
    'PRX',
    'proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n',
    'PROXY\r\n',
    'PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n',
    'PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n',
    'PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n',
    'PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n',
    'PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n',
    'PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n',
    'PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n',
    'PROXY TCP6 1.2.3.4 2001:db8::2 1 2\r\n',
    'PROXY TCP4 1.2.3.4 5.6.7.8 65536 25\r\n',
    'PROXY TCP4 1.2.3.4 5.6.7.8 -1 25\r\n',
    'PROXY TCP4 1.2.3.4 5.6.7.8 x 25\r\n',
    'PROXY TCP4 1.2.3.4 5.6.7.8 1234567 25\r\n',
  ]) {
    assert.equal(parseProxyHeader(ascii(s)).state, 'error', JSON.stringify(s));
  }
});

test('v1: the destination address and port are checked too', () => {
  for (const s of [
    'PROXY TCP4 1.2.3.4 junk 1 25\r\n',
    'PROXY TCP4 1.2.3.4 2001:db8::1 1 25\r\n',
    'PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n',
    'PROXY TCP4 1.2.3.4 5.6.7.8 1 smtp\r\n',
  ]) {
    assert.equal(parseProxyHeader(ascii(s)).state, 'error', JSON.stringify(s));
  }
});

test('v1: over-long headers are refused, with or without a CRLF', () => {
  // No CRLF within 107 octets.
  assert.deepEqual(parseProxyHeader(ascii(`PROXY TCP4 ${'1'.repeat(102)}`)), { state: 'error', message: 'PROXY v1 header too long' });
  assert.equal(parseProxyHeader(ascii(`PROXY TCP4 ${'1'.repeat(96)}`)).state, 'need-more');
  // A CRLF that comes only after 107 octets.
  const padded = `PROXY TCP4 1.2.3.4 5.6.7.8 1 ${'9'.repeat(100)}\r\n`;
  assert.equal(parseProxyHeader(ascii(padded)).state, 'error');
  const unknown = `PROXY UNKNOWN ${'x'.repeat(100)}\r\n`;
  assert.equal(parseProxyHeader(ascii(unknown)).state, 'error');
});

test('v1: the longest legal header (107 octets) is accepted', () => {
  const addr = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
  const header = `PROXY TCP6 ${addr} ${addr} 65535 65535\r\n`;
  assert.equal(header.length, 104);
  const r = parseProxyHeader(ascii(header));
  assert.deepEqual(r, { state: 'done', info: { ip: addr, port: 65535 }, consumed: 104 });
  const unknown107 = `PROXY UNKNOWN ${'x'.repeat(91)}\r\n`;
  assert.equal(unknown107.length, 107);
  assert.equal(parseProxyHeader(ascii(unknown107)).state, 'done');
});

// ---- v2 -----------------------------------------------------------------------------------

test('v2 PROXY over IPv4', () => {
  const h = v2(0x21, 0x11, ipv4Body([192, 0, 2, 10], [198, 51, 100, 1], 40000, 25));
  assert.equal(h.length, 28);
  assert.deepEqual(parseProxyHeader(h), { state: 'done', info: { ip: '192.0.2.10', port: 40000 }, consumed: 28 });
});

test('v2 PROXY over IPv6, with the address written in its shortest form', () => {
  const cases: [number[], string][] = [
    [[0x2001, 0xdb8, 0, 0, 0, 0, 0, 1], '2001:db8::1'],
    [[0, 0, 0, 0, 0, 0, 0, 1], '::1'],
    [[0, 0, 0, 0, 0, 0, 0, 0], '::'],
    [[0xfe80, 0, 0, 0, 0, 0, 0, 0], 'fe80::'],
    [[0x2001, 0xdb8, 0, 0, 1, 0, 0, 1], '2001:db8::1:0:0:1'],
    [[0x2001, 0xdb8, 0, 1, 0, 0, 0, 1], '2001:db8:0:1::1'],
    [[0x2001, 0xdb8, 1, 2, 3, 4, 5, 6], '2001:db8:1:2:3:4:5:6'],
    [[0x2001, 0, 1, 2, 3, 4, 5, 6], '2001:0:1:2:3:4:5:6'],
    [[0xabcd, 0x10, 0, 0, 0x100, 0, 0, 0], 'abcd:10:0:0:100::'],
  ];
  for (const [groups, ip] of cases) {
    const h = v2(0x21, 0x21, ipv6Body(groups, [0, 0, 0, 0, 0, 0, 0, 2], 1234, 25));
    assert.deepEqual(parseProxyHeader(h), { state: 'done', info: { ip, port: 1234 }, consumed: 52 }, ip);
  }
});

test('v2 IPv6 addresses agree with the URL standard\'s canonical form', () => {
  let seed = 7;
  const rnd = (): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed;
  };
  for (let n = 0; n < 3000; n++) {
    const groups = Array.from({ length: 8 }, () => (rnd() % 3 === 0 ? rnd() & 0xffff : 0));
    if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) continue; // mapped: dotted form, tested below
    const r = parseProxyHeader(v2(0x21, 0x21, ipv6Body(groups, groups, 1, 2)));
    assert.ok(r.state === 'done' && r.info);
    const canonical = new URL(`http://[${groups.map((g) => g.toString(16)).join(':')}]/`).hostname.slice(1, -1);
    assert.equal(r.info.ip, canonical);
  }
});

test('v2 IPv4-mapped IPv6 source normalizes to the IPv4 address', () => {
  const h = v2(0x21, 0x21, ipv6Body([0, 0, 0, 0, 0, 0xffff, 0xc000, 0x0207], [0, 0, 0, 0, 0, 0, 0, 1], 5000, 25));
  const r = parseProxyHeader(h);
  assert.ok(r.state === 'done' && r.info);
  assert.equal(r.info.ip, '::ffff:192.0.2.7');
  assert.equal(normalizeIp(r.info.ip), '192.0.2.7');
});

test('v2 LOCAL: the connection address stands, the whole header is consumed', () => {
  assert.deepEqual(parseProxyHeader(v2(0x20, 0x00, Buffer.alloc(0))), { state: 'done', info: null, consumed: 16 });
  // LOCAL may still carry an address block, which is skipped.
  const withBody = v2(0x20, 0x11, ipv4Body([1, 2, 3, 4], [5, 6, 7, 8], 1, 2));
  assert.deepEqual(parseProxyHeader(withBody), { state: 'done', info: null, consumed: 28 });
});

test('v2 UNSPEC and UNIX families: the connection address stands', () => {
  assert.deepEqual(parseProxyHeader(v2(0x21, 0x00, Buffer.alloc(0))), { state: 'done', info: null, consumed: 16 });
  assert.deepEqual(parseProxyHeader(v2(0x21, 0x31, Buffer.alloc(216))), { state: 'done', info: null, consumed: 232 });
});

test('v2 TLVs after the addresses are skipped', () => {
  const tlv = Buffer.from([0x04, 0x00, 0x03, 0x61, 0x62, 0x63]);
  const h = v2(0x21, 0x11, Buffer.concat([ipv4Body([10, 0, 0, 1], [10, 0, 0, 2], 7, 25), tlv]));
  const r = parseProxyHeader(Buffer.concat([h, ascii('EHLO x\r\n')]));
  assert.deepEqual(r, { state: 'done', info: { ip: '10.0.0.1', port: 7 }, consumed: 34 });
});

test('v2: every proper prefix needs more', () => {
  const h = v2(0x21, 0x11, ipv4Body([192, 0, 2, 10], [198, 51, 100, 1], 40000, 25));
  for (let n = 1; n < h.length; n++) {
    assert.deepEqual(parseProxyHeader(h.subarray(0, n)), { state: 'need-more' }, `prefix of ${n}`);
  }
  const h6 = v2(0x21, 0x21, ipv6Body([1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6, 7, 9], 1, 2));
  for (let n = 1; n < h6.length; n++) assert.equal(parseProxyHeader(h6.subarray(0, n)).state, 'need-more');
});

test('v2: a broken signature, version or command is an error', () => {
  const good = v2(0x21, 0x11, ipv4Body([1, 2, 3, 4], [5, 6, 7, 8], 1, 2));
  for (let i = 0; i < 12; i++) {
    const bad = Buffer.from(good);
    bad[i] ^= 0x40;
    if (i === 0 && bad[0] !== 0x0d) continue; // no longer looks like v2 at all (checked below)
    assert.equal(parseProxyHeader(bad).state, 'error', `signature byte ${i}`);
    assert.equal(parseProxyHeader(bad.subarray(0, i + 1)).state, 'error', `partial signature broken at ${i}`);
  }
  const v1 = Buffer.from(good);
  v1[0] = 0x20;
  assert.equal(parseProxyHeader(v1).state, 'error');
  assert.equal(parseProxyHeader(v2(0x11, 0x11, ipv4Body([1, 2, 3, 4], [5, 6, 7, 8], 1, 2))).state, 'error');
  assert.equal(parseProxyHeader(v2(0x31, 0x11, ipv4Body([1, 2, 3, 4], [5, 6, 7, 8], 1, 2))).state, 'error');
  assert.equal(parseProxyHeader(v2(0x22, 0x11, ipv4Body([1, 2, 3, 4], [5, 6, 7, 8], 1, 2))).state, 'error');
  assert.equal(parseProxyHeader(v2(0x2f, 0x11, ipv4Body([1, 2, 3, 4], [5, 6, 7, 8], 1, 2))).state, 'error');
});

test('v2: a length longer than what arrived needs more', () => {
  const h = v2(0x21, 0x11, ipv4Body([1, 2, 3, 4], [5, 6, 7, 8], 1, 2), 100);
  assert.deepEqual(parseProxyHeader(h), { state: 'need-more' });
});
