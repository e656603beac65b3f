import { randomBytes } from 'node:crypto';

/** One SASL exchange of AUTH (RFC 4954): PLAIN (RFC 4616), LOGIN and CRAM-MD5 (RFC 2195). */
export type SaslStep =
  | { kind: 'challenge'; text: string }
  | { kind: 'credentials'; authzid: string; user: string; password: string }
  | { kind: 'cram'; user: string; digest: string; challenge: string }
  | { kind: 'error'; code: number; enhanced: string; text: string };

export const SASL_MECHANISMS = ['PLAIN', 'LOGIN', 'CRAM-MD5'] as const;

const b64 = (s: string): string => Buffer.from(s).toString('base64');

function decode(line: string): string | null {
  const t = line.trim();
  if (t === '=') return '';
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(t) || t.length % 4 !== 0) return null;
  return Buffer.from(t, 'base64').toString('utf8');
}

const badBase64: SaslStep = { kind: 'error', code: 501, enhanced: '5.5.2', text: 'Cannot decode response' };
const cancelled: SaslStep = { kind: 'error', code: 501, enhanced: '5.0.0', text: 'Authentication cancelled' };

export class SaslExchange {
  private user: string | null = null;
  private challenge = '';

  constructor(
    readonly mechanism: string,
    private readonly hostname = 'localhost',
  ) {}

  /** The first step, with the optional initial response from the AUTH line. */
  start(initial: string | undefined): SaslStep {
    if (this.mechanism === 'CRAM-MD5') {
      if (initial !== undefined) return { kind: 'error', code: 501, enhanced: '5.5.2', text: 'CRAM-MD5 takes no initial response' };
      this.challenge = `<${randomBytes(8).toString('hex')}.${Date.now()}@${this.hostname}>`;
      return { kind: 'challenge', text: b64(this.challenge) };
    }
    if (this.mechanism === 'PLAIN') return initial === undefined ? { kind: 'challenge', text: '' } : this.plain(initial);
    if (initial === undefined) return { kind: 'challenge', text: b64('Username:') };
    return this.login(initial);
  }

  /** The client's answer to the last challenge. */
  next(line: string): SaslStep {
    if (line.trim() === '*') return cancelled;
    if (this.mechanism === 'CRAM-MD5') return this.cram(line);
    return this.mechanism === 'PLAIN' ? this.plain(line) : this.login(line);
  }

  private plain(line: string): SaslStep {
    const text = decode(line);
    if (text === null) return badBase64;
    const parts = text.split('\0');
    if (parts.length !== 3 || !parts[1]) return { kind: 'error', code: 501, enhanced: '5.5.2', text: 'Malformed PLAIN response' };
    return { kind: 'credentials', authzid: parts[0], user: parts[1], password: parts[2] };
  }

  private cram(line: string): SaslStep {
    const text = decode(line);
    if (text === null) return badBase64;
    const m = /^(\S+) ([0-9a-f]{32})$/i.exec(text);
    if (!m) return { kind: 'error', code: 501, enhanced: '5.5.2', text: 'Malformed CRAM-MD5 response' };
    return { kind: 'cram', user: m[1], digest: m[2].toLowerCase(), challenge: this.challenge };
  }

  private login(line: string): SaslStep {
    const text = decode(line);
    if (text === null) return badBase64;
    if (this.user === null) {
      this.user = text;
      return { kind: 'challenge', text: b64('Password:') };
    }
    return { kind: 'credentials', authzid: '', user: this.user, password: text };
  }
}
