import { isIP } from 'node:net';

/** The client's real address as a PROXY protocol header (v1 or v2) tells it. */
export interface ProxyInfo {
  ip: string;
  port: number;
}

export type ProxyParse =
  | { state: 'need-more' }
  | { state: 'done'; info: ProxyInfo | null; consumed: number }
  | { state: 'error'; message: string };

const V2_SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_MAX = 107;

/**
 * Parses a PROXY header at the start of `buf`. `info` is null for `UNKNOWN`/`LOCAL`, where the
 * connection's own address stands.
 */
export function parseProxyHeader(buf: Buffer): ProxyParse {
  if (buf.length >= 1 && buf[0] === 0x0d) return parseV2(buf);
  if (buf.length < 6) return 'PROXY '.startsWith(buf.toString('latin1')) ? { state: 'need-more' } : { state: 'error', message: 'not a PROXY header' };
  if (buf.toString('latin1', 0, 6) !== 'PROXY ') return { state: 'error', message: 'not a PROXY header' };
  const end = buf.indexOf('\r\n');
  if (end < 0) return buf.length > V1_MAX ? { state: 'error', message: 'PROXY v1 header too long' } : { state: 'need-more' };
  if (end + 2 > V1_MAX) return { state: 'error', message: 'PROXY v1 header too long' };
  const parts = buf.toString('latin1', 0, end).split(' ');
  if (parts[1] === 'UNKNOWN') return { state: 'done', info: null, consumed: end + 2 };
  if (parts.length !== 6 || (parts[1] !== 'TCP4' && parts[1] !== 'TCP6')) return { state: 'error', message: 'bad PROXY v1 header' };
  const family = parts[1] === 'TCP4' ? 4 : 6;
  const port = Number(parts[4]);
  const validPort = (p: string): boolean => /^\d{1,5}$/.test(p) && Number(p) <= 65535;
  if (isIP(parts[2]) !== family || isIP(parts[3]) !== family || !validPort(parts[4]) || !validPort(parts[5])) {
    return { state: 'error', message: 'bad PROXY v1 addresses' };
  }
  return { state: 'done', info: { ip: parts[2], port }, consumed: end + 2 };
}

function parseV2(buf: Buffer): ProxyParse {
  const n = Math.min(buf.length, V2_SIG.length);
  if (!buf.subarray(0, n).equals(V2_SIG.subarray(0, n))) return { state: 'error', message: 'not a PROXY header' };
  if (buf.length < 16) return { state: 'need-more' };
  const verCmd = buf[12];
  if (verCmd >> 4 !== 2) return { state: 'error', message: 'bad PROXY v2 version' };
  const len = buf.readUInt16BE(14);
  if (buf.length < 16 + len) return { state: 'need-more' };
  const consumed = 16 + len;
  const cmd = verCmd & 0x0f;
  if (cmd === 0) return { state: 'done', info: null, consumed }; // LOCAL: health check from the proxy
  if (cmd !== 1) return { state: 'error', message: 'bad PROXY v2 command' };
  const family = buf[13] >> 4;
  const body = buf.subarray(16, 16 + len);
  if (family === 1 && len >= 12) {
    return { state: 'done', info: { ip: Array.from(body.subarray(0, 4)).join('.'), port: body.readUInt16BE(8) }, consumed };
  }
  if (family === 2 && len >= 36) {
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(body.readUInt16BE(i).toString(16));
    // An IPv4-mapped address is written `::ffff:a.b.c.d`, as sockets report it, so it normalizes to IPv4.
    const mapped = groups.slice(0, 5).every((g) => g === '0') && groups[5] === 'ffff';
    const ip = mapped ? `::ffff:${Array.from(body.subarray(12, 16)).join('.')}` : compressIpv6(groups);
    return { state: 'done', info: { ip, port: body.readUInt16BE(32) }, consumed };
  }
  return { state: 'done', info: null, consumed };
}

function compressIpv6(groups: string[]): string {
  // RFC 5952: the longest run of two or more zero groups (the first one on a tie) becomes "::".
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < groups.length; ) {
    let j = i;
    while (j < groups.length && groups[j] === '0') j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j > i ? j : i + 1;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}
