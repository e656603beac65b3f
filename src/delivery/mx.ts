import { isIPv4, isIPv6 } from 'node:net';
import { domainToASCII } from 'node:url';
import type { DnsResolver } from '../dns/resolver.js';

/**
 * Where mail for a domain goes when sending directly (RFC 5321 §5.1): the MX hosts in
 * preference order (random order among equal preferences), each with its addresses; the
 * domain itself when it has no MX (implicit MX); an address literal as it is. Every lookup
 * goes through the shared DnsResolver.
 */

export interface MxAddress {
  address: string;
  family: 4 | 6;
}

export interface MxHost {
  /** Host name (ASCII, lower case, no trailing dot); the literal as written for `[192.0.2.1]`. */
  name: string;
  preference: number;
  /** In the order to try them (see `MxOptions.addressOrder`); empty when `error` says why. */
  addresses: MxAddress[];
  /** Why the host has no address: `temporary` for a DNS failure, else the name or its records do not exist. */
  error?: { temporary: boolean; message: string };
}

/** Hosts to try, in order. At least one host has at least one address. */
export interface MxRoute {
  kind: 'route';
  domain: string;
  /** `mx`: from MX records; `implicit`: the domain's own A/AAAA (no MX); `literal`: `[ip]`. */
  source: 'mx' | 'implicit' | 'literal';
  hosts: MxHost[];
}

/**
 * No route. `permanent`: bounce (`5.1.2` no such domain, `5.1.10` null MX, `5.4.4` no
 * address for any host, `5.4.6` the MX points back at this server); `temporary`: retry
 * later (`4.4.3`, DNS timeout or SERVFAIL).
 */
export interface MxFailure {
  kind: 'permanent' | 'temporary';
  domain: string;
  /** RFC 3463 enhanced status code for the DSN. */
  status: string;
  message: string;
}

export type MxResult = MxRoute | MxFailure;

export interface MxOptions {
  /** Address families to look up (default both). */
  families?: 'ipv4' | 'ipv6' | 'both';
  /** Order of a host's addresses: IPv4 ones first (default) or IPv6 ones first. */
  addressOrder?: 'ipv4-first' | 'ipv6-first';
  /** At most this many MX hosts are resolved and returned (default 10), the most preferred ones. */
  maxHosts?: number;
  /**
   * This server's own names. When one is an MX host of the domain, only the MX hosts more
   * preferred than it are used (RFC 5321 §5.1); none left means a mail loop (5.4.6).
   */
  localNames?: string[];
  /** Random numbers in [0, 1) for ordering equal preferences (tests pass a fixed one). */
  random?: () => number;
}

/** One destination the sender connects to, in order. */
export interface MxTarget {
  host: string;
  preference: number;
  address: string;
  family: 4 | 6;
}

/** DNS error codes that mean the name (or the record) does not exist: the answer is final. */
const NXDOMAIN = new Set(['ENOTFOUND', 'EBADNAME']);
const NODATA = 'ENODATA';

type Lookup<T> = { ok: true; value: T } | { ok: false; code: string };

async function lookup<T>(fn: () => Promise<T>): Promise<Lookup<T>> {
  try {
    return { ok: true, value: await fn() };
  } catch (err) {
    return { ok: false, code: (err as NodeJS.ErrnoException)?.code ?? 'EUNKNOWN' };
  }
}

const isPermanentCode = (code: string): boolean => NXDOMAIN.has(code) || code === NODATA;

function normalizeName(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

/** Parses `[192.0.2.1]` / `[IPv6:2001:db8::1]`; undefined when `domain` is not a literal, null when malformed. */
export function parseAddressLiteral(domain: string): MxAddress | null | undefined {
  if (!domain.startsWith('[')) return undefined;
  const m = /^\[(?:(IPv6):)?([^\]]+)\]$/i.exec(domain);
  if (!m) return null;
  if (m[1]) return isIPv6(m[2]) ? { address: m[2], family: 6 } : null;
  return isIPv4(m[2]) ? { address: m[2], family: 4 } : null;
}

/** The domain in the ASCII form DNS needs (IDNA for internationalized names), or null when it is not a domain name. */
export function asciiDomain(domain: string): string | null {
  const name = normalizeName(domain.trim());
  if (!name || name.length > 253) return null;
  const ascii = /^[\x21-\x7e]+$/.test(name) ? name : domainToASCII(name);
  if (!ascii) return null;
  const labels = ascii.split('.');
  const ok = labels.every((l) => l.length > 0 && l.length <= 63 && /^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?$/i.test(l));
  return ok ? ascii.toLowerCase() : null;
}

function shuffle<T>(items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

/** Resolves one host to its addresses (A and AAAA at the same time). */
async function resolveHost(dns: DnsResolver, name: string, preference: number, opts: Required<Pick<MxOptions, 'families' | 'addressOrder'>>): Promise<MxHost> {
  if (isIPv4(name) || isIPv6(name)) {
    // RFC 5321 §5.1: an MX names a host, not an address; such a record is a configuration error.
    return { name, preference, addresses: [], error: { temporary: false, message: `MX host ${name} is an IP address, not a host name` } };
  }
  const want4 = opts.families !== 'ipv6';
  const want6 = opts.families !== 'ipv4';
  const [v4, v6] = await Promise.all([
    want4 ? lookup(() => dns.a(name)) : Promise.resolve<Lookup<string[]>>({ ok: true, value: [] }),
    want6 ? lookup(() => dns.aaaa(name)) : Promise.resolve<Lookup<string[]>>({ ok: true, value: [] }),
  ]);
  const a4: MxAddress[] = v4.ok ? v4.value.map((address) => ({ address, family: 4 as const })) : [];
  const a6: MxAddress[] = v6.ok ? v6.value.map((address) => ({ address, family: 6 as const })) : [];
  const addresses = opts.addressOrder === 'ipv6-first' ? [...a6, ...a4] : [...a4, ...a6];
  if (addresses.length) return { name, preference, addresses };
  const codes = [v4, v6].filter((r): r is { ok: false; code: string } => !r.ok).map((r) => r.code);
  const temporary = codes.find((c) => !isPermanentCode(c));
  if (temporary) return { name, preference, addresses, error: { temporary: true, message: `DNS lookup of ${name} failed (${temporary})` } };
  const nx = codes.some((c) => NXDOMAIN.has(c));
  return { name, preference, addresses, error: { temporary: false, message: nx ? `host ${name} not found` : `host ${name} has no address record` } };
}

/**
 * Looks up where mail for `domain` goes. Never throws for DNS trouble: it is in the result,
 * classified as permanent (bounce) or temporary (retry).
 */
export async function lookupMx(dns: DnsResolver, domain: string, options: MxOptions = {}): Promise<MxResult> {
  const families = options.families ?? 'both';
  const addressOrder = options.addressOrder ?? 'ipv4-first';
  const random = options.random ?? Math.random;
  const maxHosts = Math.max(1, options.maxHosts ?? 10);
  const fail = (kind: MxFailure['kind'], status: string, message: string): MxFailure => ({ kind, domain, status, message });

  const literal = parseAddressLiteral(domain.trim());
  if (literal === null) return fail('permanent', '5.1.2', `invalid address literal ${domain}`);
  if (literal) {
    const allowed = families === 'both' || (families === 'ipv4') === (literal.family === 4);
    if (!allowed) return fail('permanent', '5.4.4', `address literal ${domain} is of a disabled address family`);
    return { kind: 'route', domain, source: 'literal', hosts: [{ name: domain.trim(), preference: 0, addresses: [literal] }] };
  }

  const name = asciiDomain(domain);
  if (!name) return fail('permanent', '5.1.2', `invalid domain name ${JSON.stringify(domain)}`);

  const mx = await lookup(() => dns.mx(name));
  if (!mx.ok && NXDOMAIN.has(mx.code)) return fail('permanent', '5.1.2', `domain ${name} not found`);
  if (!mx.ok && mx.code !== NODATA) return fail('temporary', '4.4.3', `DNS lookup of MX for ${name} failed (${mx.code})`);
  const records = mx.ok ? mx.value : [];

  if (!records.length) {
    // RFC 5321 §5.1: no MX records: the domain itself is the one host, preference 0.
    const host = await resolveHost(dns, name, 0, { families, addressOrder });
    if (host.addresses.length) return { kind: 'route', domain, source: 'implicit', hosts: [host] };
    if (host.error?.temporary) return fail('temporary', '4.4.3', host.error.message);
    return fail('permanent', '5.4.4', `domain ${name} has no MX record and no address record`);
  }

  // RFC 7505: one MX of "." (Node gives an empty exchange) says the domain accepts no mail.
  const real = records.filter((r) => normalizeName(r.exchange) !== '');
  if (!real.length) return fail('permanent', '5.1.10', `domain ${name} does not accept mail (null MX)`);

  // One entry per host name, at its best preference.
  const best = new Map<string, number>();
  for (const r of real) {
    const host = normalizeName(r.exchange);
    best.set(host, Math.min(best.get(host) ?? Infinity, r.priority));
  }
  let entries = [...best].map(([host, preference]) => ({ host, preference }));

  const locals = new Set((options.localNames ?? []).map((n) => asciiDomain(n) ?? normalizeName(n)));
  const own = entries.filter((e) => locals.has(e.host)).reduce((min, e) => Math.min(min, e.preference), Infinity);
  if (own !== Infinity) {
    entries = entries.filter((e) => e.preference < own);
    if (!entries.length) return fail('permanent', '5.4.6', `mail for ${name} loops back to myself`);
  }

  const groups = new Map<number, typeof entries>();
  for (const e of entries) groups.set(e.preference, [...(groups.get(e.preference) ?? []), e]);
  const ordered = [...groups.keys()]
    .sort((a, b) => a - b)
    .flatMap((p) => shuffle(groups.get(p)!, random))
    .slice(0, maxHosts);

  const hosts = await Promise.all(ordered.map((e) => resolveHost(dns, e.host, e.preference, { families, addressOrder })));
  if (hosts.some((h) => h.addresses.length)) return { kind: 'route', domain, source: 'mx', hosts };
  const temporary = hosts.find((h) => h.error?.temporary);
  if (temporary) return fail('temporary', '4.4.3', `no MX host of ${name} could be resolved: ${temporary.error!.message}`);
  return fail('permanent', '5.4.4', `no MX host of ${name} has an address (${hosts.map((h) => h.error?.message).join('; ')})`);
}

/** Every address to try, in order: hosts by preference, each host's addresses in turn; each address once. */
export function* mxTargets(route: MxRoute): Generator<MxTarget> {
  const seen = new Set<string>();
  for (const host of route.hosts) {
    for (const a of host.addresses) {
      if (seen.has(a.address)) continue;
      seen.add(a.address);
      yield { host: host.name, preference: host.preference, address: a.address, family: a.family };
    }
  }
}
