import { Resolver } from 'node:dns/promises';

export interface DnsSettings {
  /** `ip` or `ip:port`; empty = the system's resolvers. */
  servers: string[];
  timeoutMs: number;
  tries: number;
}

export type RecordType = 'A' | 'AAAA' | 'MX' | 'TXT' | 'PTR' | 'CNAME' | 'NS';

/**
 * The one DNS client every lookup goes through (RBL, SPF, MX), so tests and administrators
 * can point all of them at one server (a test zone on 127.0.0.1, a local cache).
 */
export class DnsResolver {
  private readonly resolver: Resolver;

  constructor(readonly settings: DnsSettings) {
    this.resolver = new Resolver({ timeout: settings.timeoutMs, tries: settings.tries });
    if (settings.servers.length) this.resolver.setServers(settings.servers);
  }

  a(name: string): Promise<string[]> {
    return this.resolver.resolve4(name);
  }

  aaaa(name: string): Promise<string[]> {
    return this.resolver.resolve6(name);
  }

  txt(name: string): Promise<string[][]> {
    return this.resolver.resolveTxt(name);
  }

  mx(name: string): Promise<{ exchange: string; priority: number }[]> {
    return this.resolver.resolveMx(name);
  }

  /** `dns.promises.resolve`-shaped, for libraries that take a resolver function (mailauth). */
  resolve = (name: string, type: RecordType): Promise<unknown> => this.resolver.resolve(name, type) as Promise<unknown>;

  cancel(): void {
    this.resolver.cancel();
  }
}

/** True when an error only means "no such record" (not a failure of DNS itself). */
export function isNoData(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return code === 'ENOTFOUND' || code === 'ENODATA';
}
