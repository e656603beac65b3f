import { domainToASCII } from 'node:url';
import type { Config } from '../config/schema.js';
import { resolveSecret } from '../config/load.js';

export interface User {
  name: string;
  passwordHash?: string;
  /** Shared secret for CRAM-MD5, when configured. */
  cramSecret?: string;
  addresses: string[];
  /** Mailbox folder relative to the mail root: `<domain>/<local-part>` of the first address. */
  mailbox: string;
}

export type Route = { kind: 'local'; mailbox: string } | { kind: 'remote' };
export interface Target {
  address: string;
  route: Route;
}

const MAX_ALIAS_DEPTH = 10;

/** Turns a local part into one safe folder name (no separators, no dot files, no controls). */
export function safeFolderName(localPart: string): string {
  let s = localPart;
  if (s.startsWith('"') && s.endsWith('"')) s = s.slice(1, -1).replace(/\\(.)/g, '$1');
  s = s.toLowerCase().replace(/[\x00-\x1f\x7f/\\%:]/g, (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  if (s.startsWith('.')) s = `%2e${s.slice(1)}`;
  return s || '%';
}

/** Lower case, and IDNs in their ASCII (punycode) form, so every spelling finds one domain. */
export function canonicalDomain(domain: string): string {
  const d = domain.toLowerCase();
  if (!/[^\x00-\x7f]/.test(d)) return d;
  return domainToASCII(d) || d;
}

function splitAddress(address: string): [string, string] {
  const at = address.lastIndexOf('@');
  return [address.slice(0, at), canonicalDomain(address.slice(at + 1))];
}

function normalizeAddress(address: string): string {
  const [local, domain] = splitAddress(address);
  return `${local.toLowerCase()}@${domain}`;
}

/** Local domains, users and aliases: who is local, where their mail goes, what EXPN shows. */
export class Directory {
  private readonly domains = new Map<string, { catchAll: boolean }>();
  private readonly byAddress = new Map<string, User>();
  readonly users = new Map<string, User>();
  private readonly aliases = new Map<string, string[]>();

  constructor(config: Pick<Config, 'domains' | 'users' | 'aliases'>) {
    for (const d of config.domains) this.domains.set(canonicalDomain(d.name), { catchAll: d.catchAll });
    for (const u of config.users) {
      const first = u.addresses[0];
      const mailbox = first ? `${splitAddress(first)[1]}/${safeFolderName(splitAddress(first)[0])}` : `users/${safeFolderName(u.name)}`;
      const user: User = { name: u.name, addresses: u.addresses, mailbox, passwordHash: u.password ? resolveSecret(u.password) : undefined, cramSecret: u.cramSecret ? resolveSecret(u.cramSecret) : undefined };
      this.users.set(u.name, user);
      for (const a of u.addresses) this.byAddress.set(normalizeAddress(a), user);
    }
    for (const [from, to] of Object.entries(config.aliases)) this.aliases.set(normalizeAddress(from), to);
  }

  get hasCramUsers(): boolean {
    for (const u of this.users.values()) if (u.cramSecret) return true;
    return false;
  }

  isLocalDomain(domain: string): boolean {
    return this.domains.has(canonicalDomain(domain));
  }

  get firstDomain(): string | undefined {
    return this.domains.keys().next().value;
  }

  userByAddress(address: string): User | undefined {
    return this.byAddress.get(normalizeAddress(address));
  }

  /**
   * Where mail for `address` goes, following aliases (which may point off-site). Null when the
   * address is in a local domain but nobody there receives it.
   */
  resolve(address: string): Target[] | null {
    const targets: Target[] = [];
    const seen = new Set<string>();
    const walk = (addr: string, depth: number): boolean => {
      const key = normalizeAddress(addr);
      if (seen.has(key)) return true;
      seen.add(key);
      const [local, domain] = splitAddress(key);
      const alias = this.aliases.get(key);
      if (alias && depth < MAX_ALIAS_DEPTH) return alias.map((a) => walk(a, depth + 1)).some(Boolean);
      const dom = this.domains.get(domain);
      if (!dom) {
        targets.push({ address: addr, route: { kind: 'remote' } });
        return true;
      }
      const user = this.byAddress.get(key);
      if (user) targets.push({ address: addr, route: { kind: 'local', mailbox: user.mailbox } });
      else if (dom.catchAll || local === 'postmaster') {
        targets.push({ address: addr, route: { kind: 'local', mailbox: `${domain}/${safeFolderName(local)}` } });
      } else return false;
      return true;
    };
    return walk(address, 0) && targets.length ? targets : null;
  }

  /** The addresses an alias or user expands to, for VRFY/EXPN (S14); empty when unknown. */
  expand(address: string): string[] {
    const key = normalizeAddress(address);
    const alias = this.aliases.get(key);
    if (alias) return [...alias];
    return this.resolve(address)?.map((t) => t.address) ?? [];
  }
}
