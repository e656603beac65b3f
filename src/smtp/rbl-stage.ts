import type { Config } from '../config/schema.js';
import type { DnsResolver } from '../dns/resolver.js';
import { checkRbl, matchesWildcard } from '../policy/dnsbl.js';
import type { SessionPolicy } from './hooks.js';
import { parseReplyText, reply, type Reply } from './reply.js';

type RblPolicy = Pick<
  SessionPolicy,
  'checkRbl' | 'rblServers' | 'rblWhitelist' | 'rblCheckAll' | 'rblFound' | 'rblAccept' | 'rblBlackhole' | 'rblRedirect' | 'rblRejectMessage' | 'rblHeader'
>;

/** The RBL globals before Start() (S20), from the configuration. */
export function rblDefaults(config: Config): RblPolicy {
  const r = config.rbl;
  return {
    checkRbl: r.enabled,
    rblServers: [...r.servers],
    rblWhitelist: [...r.whitelist],
    rblCheckAll: r.checkAll,
    rblFound: false,
    rblAccept: false,
    rblBlackhole: false,
    rblRedirect: '',
    rblRejectMessage: r.rejectMessage,
    rblHeader: '',
  };
}

/** Runs the lookups Start() asked for; sets RBLFound and returns RBLResultInfo. */
export async function runRbl(policy: RblPolicy, ip: string, dns: DnsResolver, deadlineMs: number): Promise<Record<string, number>> {
  if (!policy.checkRbl || !policy.rblServers.length || matchesWildcard(ip, policy.rblWhitelist)) return {};
  const outcome = await checkRbl(dns, ip, policy.rblServers, { checkAll: policy.rblCheckAll, deadlineMs });
  policy.rblFound = outcome.found;
  return outcome.info;
}

/** What a listing does to a message (S20), in order of precedence. */
export type RblAction = { kind: 'none' } | { kind: 'blackhole' } | { kind: 'redirect'; to: string } | { kind: 'reject'; reply: Reply };

export function rblAction(p: RblPolicy): RblAction {
  if (!p.rblFound || p.rblAccept) return { kind: 'none' };
  if (p.rblBlackhole) return { kind: 'blackhole' };
  if (p.rblRedirect.trim()) return { kind: 'redirect', to: p.rblRedirect.trim().replace(/^<(.*)>$/, '$1') };
  const text = p.rblRejectMessage.trim();
  if (!text) return { kind: 'none' };
  return { kind: 'reject', reply: parseReplyText(text) ?? reply(550, '5.7.1', text) };
}
