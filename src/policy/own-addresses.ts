import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { normalizeIp } from './cidr.js';

/** One spelling per address: IPv4-mapped IPv6 as IPv4, IPv6 compressed in lower case. */
export function canonicalIp(ip: string): string {
  const v = normalizeIp(ip);
  return isIP(v) === 6 ? new URL(`http://[${v}]/`).hostname.slice(1, -1) : v;
}

let interfaces: Set<string> | null = null;

/** This host's addresses, from its network interfaces (read once: they rarely change). */
export function interfaceAddresses(): Set<string> {
  interfaces ??= new Set(
    Object.values(networkInterfaces())
      .flatMap((list) => list ?? [])
      .map((a) => canonicalIp(a.address.replace(/%.*$/, ''))),
  );
  return interfaces;
}

/** The address in a domain literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`); null for a domain name. */
export function literalAddress(domain: string): string | null {
  if (!domain.startsWith('[') || !domain.endsWith(']')) return null;
  let ip = domain.slice(1, -1);
  if (/^IPv6:/i.test(ip)) ip = ip.slice(5);
  return isIP(ip) ? canonicalIp(ip) : null;
}
