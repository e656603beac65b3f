import { SmtpClientError } from './client-error.js';
import type { ClientSession, Exchange } from './client-session.js';

export interface ClientAuth {
  user: string;
  password: string;
  /** Default: PLAIN when offered, else LOGIN. */
  mechanism?: 'PLAIN' | 'LOGIN';
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
/** What onReply sees for a line carrying credentials. */
export const MASK = '****';

/**
 * AUTH PLAIN (with an initial response) or LOGIN (RFC 4954). Credentials configured but no
 * AUTH, or no usable mechanism, is an `auth` error rather than sending unauthenticated (a
 * smarthost would refuse to relay, and its 5xx would bounce the mail). onReply sees
 * `AUTH PLAIN ****`, `AUTH LOGIN`, then `****` for each credential line.
 */
export async function authenticate(s: ClientSession, auth: ClientAuth): Promise<void> {
  const t = s.timeouts.auth;
  if (!s.extensions.has('AUTH')) throw new SmtpClientError('auth', s.label, null, 'credentials are configured but the server does not offer AUTH');
  const offered = (s.extensions.get('AUTH') ?? '').toUpperCase().split(/\s+/).filter(Boolean);
  const mech = auth.mechanism ?? (['PLAIN', 'LOGIN'] as const).find((m) => offered.includes(m));
  if (!mech || !offered.includes(mech)) {
    throw new SmtpClientError('auth', s.label, null, `no usable AUTH mechanism (${auth.mechanism ?? 'PLAIN or LOGIN'} wanted, offered: ${offered.join(' ') || 'none'})`);
  }
  let shown: string;
  let x: Exchange;
  if (mech === 'PLAIN') {
    shown = `AUTH PLAIN ${MASK}`;
    x = await s.command(`AUTH PLAIN ${b64(`\0${auth.user}\0${auth.password}`)}`, t, shown);
  } else {
    shown = 'AUTH LOGIN';
    x = await s.command(shown, t);
    for (const secret of [auth.user, auth.password]) {
      if (x.real.code !== 334 || x.reply.code !== 334) break;
      shown = MASK;
      x = await s.command(b64(secret), t, shown);
    }
  }
  if (x.real.code === 334) {
    // The server still wants something (or onReply refused its challenge): cancel the exchange.
    shown = '*';
    const cancel = await s.command('*', t);
    if (x.reply.code === 334) x = cancel;
  }
  if (x.reply.code !== 235) {
    throw new SmtpClientError('auth', s.label, shown, `authentication as ${auth.user} refused: ${x.reply.last}`, x.reply);
  }
}
