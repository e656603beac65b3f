import type { Config } from '../config/schema.js';
import { resolveSecret } from '../config/load.js';
import { DnsResolver } from '../dns/resolver.js';
import { AuthThrottle } from './auth-throttle.js';
import { Batv } from './batv.js';

/** The policy services every SMTP service of a server shares: DNS, BATV, the AUTH throttle. */
export function policyServices(config: Config): { dns: DnsResolver; batv: Batv | null; authThrottle: AuthThrottle } {
  const a = config.limits.authFailures;
  const keys = config.batv.keys.map((k, i) => ({ id: k.id, secret: resolveSecret(k.secret, 'config', `batv.keys[${i}].secret`) }));
  return {
    dns: new DnsResolver(config.dns),
    batv: keys.length ? new Batv(keys, config.batv.validDays) : null,
    authThrottle: new AuthThrottle({ free: a.free, block: a.block, baseDelayMs: a.delayMs, maxDelayMs: a.maxDelayMs, forgetMs: a.forgetSeconds * 1000 }),
  };
}
