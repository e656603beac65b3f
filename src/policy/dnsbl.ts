import { isIP } from 'node:net';
import type { DnsResolver } from '../dns/resolver.js';
import { normalizeIp } from './cidr.js';

export interface RblOutcome {
  found: boolean;
  /** zone → the listing's A record as one number in VPOP3's byte order (S20). */
  info: Record<string, number>;
  /** Zones that did not answer in time or failed (a failure is no listing). */
  failed: string[];
}

/** The DNSBL query name: reversed octets for IPv4, reversed nibbles for IPv6 (RFC 5782). */
export function reverseName(ip: string): string | null {
  const addr = normalizeIp(ip);
  const v = isIP(addr);
  if (v === 4) return addr.split('.').reverse().join('.');
  if (v !== 6) return null;
  return expandIpv6(addr).replace(/:/g, '').split('').reverse().join('.');
}

function expandIpv6(ip: string): string {
  let s = ip;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const o = v4[1].split('.').map(Number);
    s = s.slice(0, -v4[1].length) + `${((o[0] << 8) | o[1]).toString(16)}:${((o[2] << 8) | o[3]).toString(16)}`;
  }
  const [head, tail] = s.split('::');
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return groups.map((g) => g.padStart(4, '0')).join(':');
}

/** `127.0.0.2` as VPOP3 stores it: the address bytes read as a little-endian number. */
export function vpop3Number(a: string): number {
  const o = a.split('.').map(Number);
  return (o[0] + o[1] * 0x100 + o[2] * 0x10000 + o[3] * 0x1000000) >>> 0;
}

/** VPOP3 whitelist wildcards: `*` any run, `?` one character, matched against the client IP. */
export function matchesWildcard(ip: string, patterns: string[]): boolean {
  return patterns.some((p) => {
    const re = new RegExp(`^${p.trim().replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 'i');
    return re.test(ip);
  });
}

/**
 * Looks the client up in every zone at once under one deadline (S20). Without `checkAll`
 * the first listing settles the answer and the other lookups are not waited for.
 */
export async function checkRbl(
  dns: DnsResolver,
  ip: string,
  zones: string[],
  opts: { checkAll: boolean; deadlineMs: number },
): Promise<RblOutcome> {
  const outcome: RblOutcome = { found: false, info: {}, failed: [] };
  const rev = reverseName(ip);
  if (!rev || zones.length === 0) return outcome;
  let settle!: () => void;
  const done = new Promise<void>((res) => (settle = res));
  let pending = zones.length;
  const answered = new Set<string>();
  const timer = setTimeout(settle, opts.deadlineMs);
  for (const zone of zones) {
    const name = `${rev}.${zone.replace(/^\.+|\.+$/g, '')}`;
    dns
      .a(name)
      .then(
        (addrs) => {
          const listed = addrs.find((a) => a.startsWith('127.'));
          if (listed !== undefined) {
            outcome.info[zone] = vpop3Number(listed);
            outcome.found = true;
            if (!opts.checkAll) settle();
          }
        },
        (err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOTFOUND' && err.code !== 'ENODATA') outcome.failed.push(zone);
        },
      )
      .finally(() => {
        answered.add(zone);
        if (--pending === 0) settle();
      });
  }
  await done;
  clearTimeout(timer);
  const stoppedEarly = outcome.found && !opts.checkAll;
  // A lookup still running at the deadline counts as failed: no listing (S20).
  const timedOut = stoppedEarly ? [] : zones.filter((z) => !answered.has(z));
  return { found: outcome.found, info: { ...outcome.info }, failed: [...outcome.failed, ...timedOut] };
}
