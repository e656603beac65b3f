import { isIP } from 'node:net';

/** A parsed RFC 5321 mailbox. `localPart` keeps its quoting as received. */
export interface Mailbox {
  localPart: string;
  domain: string;
  /** `localPart@domain` as it will be used in the envelope. */
  address: string;
}

export type PathResult =
  | { ok: true; mailbox: Mailbox | null; rest: string; sourceRoute: boolean }
  | { ok: false; error: string };

// RFC 5322 atext; with SMTPUTF8 any non-ASCII character is allowed too (RFC 6531).
const ATEXT = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+$/;
const ATEXT_UTF8 = /^(?:[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]|[^\x00-\x7f])+$/;
const LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$/;
const LABEL_UTF8 = /^(?:[A-Za-z0-9]|[^\x00-\x7f])(?:(?:[A-Za-z0-9-]|[^\x00-\x7f])*(?:[A-Za-z0-9]|[^\x00-\x7f]))?$/;

function validDotString(s: string, utf8: boolean): boolean {
  if (!s) return false;
  const re = utf8 ? ATEXT_UTF8 : ATEXT;
  return s.split('.').every((atom) => re.test(atom));
}

function validQuoted(s: string, utf8: boolean): boolean {
  if (s.length < 2 || s[0] !== '"' || s[s.length - 1] !== '"') return false;
  for (let i = 1; i < s.length - 1; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x5c) {
      i++;
      const n = s.charCodeAt(i);
      if (i >= s.length - 1 || n < 32 || n > 126) return false;
    } else if (c === 0x22 || c < 32 || c === 127 || (c > 127 && !utf8)) return false;
  }
  return true;
}

export function validDomain(d: string, utf8 = false): boolean {
  if (!d || Buffer.byteLength(d) > 255) return false;
  if (d.startsWith('[') && d.endsWith(']')) {
    const lit = d.slice(1, -1);
    // RFC 5321 §4.1.3 has no zone index ("fe80::1%eth0"), which isIP accepts.
    if (/^IPv6:/i.test(lit)) return !lit.includes('%') && isIP(lit.slice(5)) === 6;
    return isIP(lit) === 4;
  }
  const re = utf8 ? LABEL_UTF8 : LABEL;
  return d.split('.').every((l) => l.length <= 63 && re.test(l));
}

/** Splits `local@domain`, honouring a quoted local part that may itself contain `@`. */
export function parseMailbox(text: string, utf8 = false): Mailbox | null {
  let at: number;
  if (text.startsWith('"')) {
    let i = 1;
    for (; i < text.length; i++) {
      if (text[i] === '\\') i++;
      else if (text[i] === '"') break;
    }
    at = i + 1;
    if (text[at] !== '@') return null;
  } else {
    at = text.lastIndexOf('@');
    if (at <= 0) return null;
  }
  const localPart = text.slice(0, at);
  const domain = text.slice(at + 1);
  if (Buffer.byteLength(localPart) > 64) return null;
  if (!(localPart.startsWith('"') ? validQuoted(localPart, utf8) : validDotString(localPart, utf8))) return null;
  if (!validDomain(domain, utf8)) return null;
  return { localPart, domain, address: `${localPart}@${domain}` };
}

/**
 * Parses the path argument of MAIL FROM / RCPT TO (after the colon): `<mailbox>`, `<>`
 * (`allowNull`), an RFC 5321 source route `<@a,@b:mailbox>` (its route is ignored, §C), or a bare
 * mailbox without brackets as many clients send. Returns the text after the path as `rest`.
 */
export function parsePath(arg: string, opts: { allowNull: boolean; utf8: boolean }): PathResult {
  const s = arg.replace(/^ +/, '');
  let inner: string;
  let rest: string;
  if (s.startsWith('<')) {
    let i = 1;
    let quoted = false;
    for (; i < s.length; i++) {
      const c = s[i];
      if (quoted) {
        if (c === '\\') i++;
        else if (c === '"') quoted = false;
      } else if (c === '"') quoted = true;
      else if (c === '>') break;
    }
    if (i >= s.length) return { ok: false, error: 'missing closing ">" in address' };
    inner = s.slice(1, i);
    rest = s.slice(i + 1);
    if (rest && !rest.startsWith(' ')) return { ok: false, error: 'unexpected text after address' };
  } else {
    const sp = s.indexOf(' ');
    inner = sp < 0 ? s : s.slice(0, sp);
    rest = sp < 0 ? '' : s.slice(sp);
    if (!inner) return { ok: false, error: 'missing address' };
  }
  rest = rest.trim();
  if (inner === '') {
    return opts.allowNull ? { ok: true, mailbox: null, rest, sourceRoute: false } : { ok: false, error: 'null address not allowed here' };
  }
  let sourceRoute = false;
  if (inner.startsWith('@')) {
    const colon = inner.indexOf(':');
    if (colon < 0) return { ok: false, error: 'bad source route' };
    const hops = inner.slice(0, colon).split(',');
    if (!hops.every((h) => h.startsWith('@') && validDomain(h.slice(1)))) return { ok: false, error: 'bad source route' };
    inner = inner.slice(colon + 1);
    sourceRoute = true;
  }
  if (Buffer.byteLength(inner) > 254) return { ok: false, error: 'address too long' };
  const mailbox = parseMailbox(inner, opts.utf8);
  if (!mailbox) return { ok: false, error: `bad address syntax <${inner}>` };
  return { ok: true, mailbox, rest, sourceRoute };
}

/** ESMTP parameters `KEY[=VALUE]` keyed by upper-cased keyword (S15). */
export function parseParams(rest: string): Record<string, string> | string {
  const params: Record<string, string> = {};
  for (const part of rest.split(' ')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    const key = (eq < 0 ? part : part.slice(0, eq)).toUpperCase();
    if (!/^[A-Z0-9][A-Z0-9-]*$/.test(key)) return `bad parameter "${part}"`;
    if (key in params) return `duplicate parameter ${key}`;
    params[key] = eq < 0 ? '' : part.slice(eq + 1);
  }
  return params;
}

/** RFC 3461 xtext decoding (`+XX` hex escapes); null when malformed. */
export function decodeXtext(s: string): string | null {
  if (!/^(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*$/.test(s)) return null;
  return s.replace(/\+([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
}
