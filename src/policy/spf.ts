import { spf } from 'mailauth/lib/spf/index.js';
import type { DnsResolver } from '../dns/resolver.js';

/** The SPF results DoMAILFROM receives (S15); "" when SPF is off. */
export type SpfResult = 'none' | 'neutral' | 'pass' | 'fail' | 'softfail' | 'temperror' | 'permerror';

export interface SpfOutcome {
  result: SpfResult;
  /** The `Received-SPF:` header line (without CRLF) to add to the message. */
  header: string;
}

const RESULTS = new Set<string>(['none', 'neutral', 'pass', 'fail', 'softfail', 'temperror', 'permerror']);

/**
 * RFC 7208 check of the MAIL FROM domain (or the HELO name for `<>`) through our resolver,
 * with mailauth doing the evaluation.
 */
export async function checkSpf(dns: DnsResolver, opts: { ip: string; sender: string; helo: string; hostname: string }): Promise<SpfOutcome> {
  const sender = opts.sender || `postmaster@${opts.helo}`;
  try {
    const r = await spf({
      sender,
      ip: opts.ip,
      helo: opts.helo,
      mta: opts.hostname,
      resolver: dns.resolve as never,
    });
    const result = RESULTS.has(r.status.result) ? (r.status.result as SpfResult) : 'temperror';
    return { result, header: r.header.replace(/\r?\n$/, '') };
  } catch (err) {
    return { result: 'temperror', header: `Received-SPF: temperror (${(err as Error).message.replace(/[\r\n()]/g, ' ')}) client-ip=${opts.ip};` };
  }
}
