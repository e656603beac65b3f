/**
 * Fuzzing of the PROXY protocol header parser (src/smtp/proxy-protocol.ts): random and mutated
 * v1/v2 headers never throw, every prefix of the input gives "need more" or the same answer as
 * the whole (the connection parses a growing buffer), and valid headers give their address.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import fc from 'fast-check';
import { parseProxyHeader, type ProxyParse } from '../../src/smtp/proxy-protocol.js';
import { mutateBytes, params } from './fuzz-common.js';

const V2_SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

const port = fc.integer({ min: 0, max: 65535 });

const v1 = fc.oneof(
  fc.tuple(fc.ipV4(), fc.ipV4(), port, port).map(([s, d, sp, dp]) => `PROXY TCP4 ${s} ${d} ${sp} ${dp}\r\n`),
  fc.tuple(fc.ipV6(), fc.ipV6(), port, port).map(([s, d, sp, dp]) => `PROXY TCP6 ${s} ${d} ${sp} ${dp}\r\n`),
  fc.string({ unit: 'grapheme-ascii', maxLength: 60 }).map((junk) => `PROXY UNKNOWN${junk ? ' ' : ''}${junk.replace(/\r\n/g, '')}\r\n`),
);

interface V2 {
  bytes: Buffer;
  /** The address and port the header announces, or null (LOCAL, UNSPEC, unix...). */
  want: { ip: Buffer; port: number } | null;
}

const v2: fc.Arbitrary<V2> = fc
  .tuple(
    fc.constantFrom(0, 1),
    fc.constantFrom(0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32),
    fc.uint8Array({ minLength: 16, maxLength: 16 }),
    fc.uint8Array({ minLength: 16, maxLength: 16 }),
    port,
    port,
    fc.uint8Array({ maxLength: 40 }),
    fc.option(fc.uint8Array({ minLength: 12, maxLength: 12 })),
  )
  .map(([cmd, fam, src, dst, sp, dp, tlv, mapped]) => {
    const family = fam >> 4;
    let addr: Buffer;
    let ip: Buffer | null = null;
    const ports = Buffer.alloc(4);
    ports.writeUInt16BE(sp, 0);
    ports.writeUInt16BE(dp, 2);
    if (family === 1) {
      addr = Buffer.concat([src.subarray(0, 4), dst.subarray(0, 4), ports]);
      ip = Buffer.from(src.subarray(0, 4));
    } else if (family === 2) {
      const s = Buffer.from(src);
      if (mapped) s.fill(0, 0, 10).writeUInt16BE(0xffff, 10); // ::ffff:a.b.c.d
      addr = Buffer.concat([s, dst, ports]);
      ip = s;
    } else addr = Buffer.from(src.subarray(0, family === 3 ? 16 : 0));
    const body = Buffer.concat([addr, tlv]);
    const head = Buffer.alloc(4);
    head[0] = 0x20 | cmd;
    head[1] = fam;
    head.writeUInt16BE(body.length, 2);
    return { bytes: Buffer.concat([V2_SIG, head, body]), want: cmd === 1 && ip ? { ip, port: sp } : null };
  });

const tail = fc.constantFrom('', 'EHLO x\r\n', '\r\n', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n');

const anyHeader = fc.oneof(
  { weight: 2, arbitrary: fc.tuple(v1, tail).map(([h, t]) => Buffer.from(h + t, 'latin1')) },
  { weight: 2, arbitrary: fc.tuple(v2, tail).map(([h, t]) => Buffer.concat([h.bytes, Buffer.from(t)])) },
  { weight: 3, arbitrary: mutateBytes(fc.oneof(v1.map((h) => Buffer.from(h, 'latin1')), v2.map((h) => h.bytes))) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 120 }).map((u) => Buffer.from(u)) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }).map((u) => Buffer.concat([V2_SIG, Buffer.from(u)])) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength: 120 }).map((s) => Buffer.from(`PROXY ${s}`)) },
);

function checkResult(r: ProxyParse, buf: Buffer): void {
  if (r.state === 'need-more') return;
  if (r.state === 'error') {
    assert.equal(typeof r.message, 'string');
    return;
  }
  assert.equal(r.state, 'done');
  assert.ok(Number.isInteger(r.consumed) && r.consumed > 0 && r.consumed <= buf.length, `consumed ${r.consumed} of ${buf.length}`);
  if (r.info) {
    assert.notEqual(isIP(r.info.ip), 0, `ip ${r.info.ip}`);
    assert.ok(Number.isInteger(r.info.port) && r.info.port >= 0 && r.info.port <= 65535);
  }
}

test('fuzz parseProxyHeader: never throws; every prefix answers "need more" or as the whole', () => {
  fc.assert(
    fc.property(anyHeader, (buf) => {
      const whole = parseProxyHeader(buf);
      checkResult(whole, buf);
      for (let n = 0; n < buf.length; n++) {
        const part = parseProxyHeader(buf.subarray(0, n));
        checkResult(part, buf.subarray(0, n));
        if (part.state !== 'need-more') assert.deepEqual(part, whole, `prefix of ${n} octets: ${JSON.stringify(part)} vs ${JSON.stringify(whole)}`);
      }
    }),
    params(20_000, [[Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r')], [Buffer.from('\r\n\r\n\0\r\nQUIT\n!')], [Buffer.from('PROXY TCP6 ::1 ::1 0 65535\r\n')]]),
  );
});

/** The RFC 5952 text of 16 octets, through the WHATWG URL parser (an independent writer). */
function canonicalIpv6(b: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}

test('fuzz parseProxyHeader: valid v1 and v2 headers give their source address and port', () => {
  fc.assert(
    fc.property(v2, tail, (h, t) => {
      const r = parseProxyHeader(Buffer.concat([h.bytes, Buffer.from(t)]));
      assert.equal(r.state, 'done');
      if (r.state !== 'done') return;
      assert.equal(r.consumed, h.bytes.length);
      if (!h.want) return assert.equal(r.info, null);
      assert.ok(r.info);
      assert.equal(r.info.port, h.want.port);
      const ip = h.want.ip;
      if (ip.length === 4) assert.equal(r.info.ip, [...ip].join('.'));
      else if (ip.subarray(0, 10).every((x) => x === 0) && ip.readUInt16BE(10) === 0xffff) assert.equal(r.info.ip, `::ffff:${[...ip.subarray(12)].join('.')}`);
      else assert.equal(r.info.ip, canonicalIpv6(ip));
    }),
    params(20_000),
  );
  fc.assert(
    fc.property(v1, tail, (h, t) => {
      const r = parseProxyHeader(Buffer.from(h + t, 'latin1'));
      if (h.length > 107) return assert.equal(r.state, 'error');
      assert.equal(r.state, 'done', `${JSON.stringify(h)}: ${JSON.stringify(r)}`);
      if (r.state !== 'done') return;
      assert.equal(r.consumed, h.length);
      const parts = h.trimEnd().split(' ');
      if (parts[1] === 'UNKNOWN') return assert.equal(r.info, null);
      assert.deepEqual(r.info, { ip: parts[2], port: Number(parts[4]) });
    }),
    params(10_000),
  );
});
