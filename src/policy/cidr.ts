import { BlockList, isIP } from 'node:net';

export interface Cidr {
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

export function parseCidr(text: string): Cidr | null {
  const [address, prefixText, extra] = text.trim().split('/');
  if (extra !== undefined || !address) return null;
  const version = isIP(address);
  if (version === 0) return null;
  const max = version === 4 ? 32 : 128;
  // An empty prefix ("10.0.0.0/") must not read as /0, which would match every address.
  if (prefixText !== undefined && !/^\d+$/.test(prefixText)) return null;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (prefix > max) return null;
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

/** Strips the IPv4-mapped IPv6 prefix that dual-stack sockets report. */
export function normalizeIp(ip: string): string {
  return /^::ffff:/i.test(ip) && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip;
}

/** A set of networks answering "is this client address inside?". */
export class NetworkList {
  private readonly list = new BlockList();
  readonly empty: boolean;

  constructor(cidrs: readonly string[]) {
    for (const text of cidrs) {
      const c = parseCidr(text);
      if (!c) throw new Error(`not an IP network: ${text}`);
      this.list.addSubnet(c.address, c.prefix, c.family);
    }
    this.empty = cidrs.length === 0;
  }

  has(ip: string): boolean {
    const addr = normalizeIp(ip);
    const v = isIP(addr);
    if (v === 0) return false;
    return this.list.check(addr, v === 4 ? 'ipv4' : 'ipv6');
  }
}
