import type { ClientReply } from './client-reply.js';

/** EHLO keywords (upper case) → their parameters ("" when none), from an EHLO reply. */
export function parseExtensions(ehlo: ClientReply): Map<string, string> {
  const ext = new Map<string, string>();
  for (const line of ehlo.lines.slice(1)) {
    const text = line.slice(4).trim();
    if (!text) continue;
    const m = /^([A-Za-z0-9][A-Za-z0-9-]*)(?:[ =](.*))?$/.exec(text);
    if (!m) continue;
    const key = m[1].toUpperCase();
    const value = (m[2] ?? '').trim();
    // Old servers announce "AUTH=LOGIN PLAIN" (for Outlook) too; merge it into AUTH.
    const had = ext.get(key);
    ext.set(key, key === 'AUTH' && had ? `${had} ${value}`.trim() : value);
  }
  return ext;
}

/**
 * RFC 3461 §4 xtext: printable ASCII but "+" and "=" as is, everything else "+XX". A string
 * whose characters are all below U+0100 is taken as bytes (the way our server decodes xtext,
 * so a received ENVID/ORCPT goes out as it came); otherwise as UTF-8.
 */
export function encodeXtext(s: string): string {
  const bytes = /^[\x00-\xff]*$/.test(s) ? Buffer.from(s, 'latin1') : Buffer.from(s, 'utf8');
  let out = '';
  for (const b of bytes) {
    out += b >= 0x21 && b <= 0x7e && b !== 0x2b && b !== 0x3d ? String.fromCharCode(b) : `+${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** ORCPT's value: `addr-type;xtext(address)` (RFC 3461 §4.2); a bare address becomes rfc822. */
export function encodeOrcpt(orcpt: string): string {
  const semi = orcpt.indexOf(';');
  if (semi > 0 && /^[A-Za-z0-9-]+$/.test(orcpt.slice(0, semi))) return `${orcpt.slice(0, semi)};${encodeXtext(orcpt.slice(semi + 1))}`;
  return `rfc822;${encodeXtext(orcpt)}`;
}

export interface TxRecipient {
  address: string;
  /** RFC 3461 NOTIFY values: NEVER, or any of SUCCESS, FAILURE, DELAY. */
  notify?: string[];
  /** Original recipient as kept by the queue (decoded), e.g. "rfc822;user@example.com". */
  orcpt?: string;
}

export interface TxEnvelope {
  /** Return path; "" for the null sender. */
  from: string;
  recipients: TxRecipient[];
  /** Bytes of message data, for SIZE= (RFC 1870). */
  size: number;
  /** The message body type as received (the queue envelope's `body`). */
  body?: '7BIT' | '8BITMIME' | 'BINARYMIME';
  /** The message needs SMTPUTF8 (RFC 6531); also implied by a non-ASCII address. */
  smtputf8?: boolean;
  ret?: 'FULL' | 'HDRS';
  /** Decoded, as the queue keeps it; xtext-encoded on the wire. */
  envid?: string;
}

/** A refusal decided before anything is sent, shaped like a server reply (no onReply call). */
export interface LocalRefusal {
  code: number;
  enhanced: string;
  reply: string;
}

const nonAscii = (s: string): boolean => /[^\x00-\x7f]/.test(s);
const badPath = (s: string): boolean => /[\x00-\x1f\x7f<> ]/.test(s);

function refusal(code: number, enhanced: string, text: string): LocalRefusal {
  return { code, enhanced, reply: `${code} ${enhanced} ${text}` };
}

/**
 * What the message needs that this server lacks (or an envelope no server could take): a
 * permanent failure the caller can bounce, never a wire exchange.
 * - BINARYMIME: 554 5.6.3 (this client sends DATA only, no BDAT, so binary cannot be sent)
 * - 8-bit body without 8BITMIME: 554 5.6.3 (no down-conversion to 7-bit is done)
 * - SMTPUTF8 needed but not offered: 553 5.6.7 for a non-ASCII address, else 554 5.6.9
 * - SIZE over the server's declared maximum: 552 5.3.4
 * - an address with control characters, spaces or angle brackets: 501 5.1.3 / 5.1.7
 */
export function localRefusal(tx: TxEnvelope, ext: Map<string, string>, server: string): LocalRefusal | null {
  if (badPath(tx.from)) return refusal(501, '5.1.7', `Bad sender address syntax <${JSON.stringify(tx.from).slice(1, -1)}>`);
  const bad = tx.recipients.find((r) => badPath(r.address) || r.address === '');
  if (bad) return refusal(501, '5.1.3', `Bad recipient address syntax <${JSON.stringify(bad.address).slice(1, -1)}>`);
  if (tx.body === 'BINARYMIME') return refusal(554, '5.6.3', 'Conversion required but not supported: binary message, and this client does not send BDAT');
  if (tx.body === '8BITMIME' && !ext.has('8BITMIME')) {
    return refusal(554, '5.6.3', `Conversion required but not supported: 8-bit message, and ${server} does not offer 8BITMIME`);
  }
  const utf8Address = nonAscii(tx.from) || tx.recipients.some((r) => nonAscii(r.address));
  if ((tx.smtputf8 || utf8Address) && !ext.has('SMTPUTF8')) {
    return utf8Address
      ? refusal(553, '5.6.7', `Non-ASCII address, and ${server} does not offer SMTPUTF8`)
      : refusal(554, '5.6.9', `UTF-8 message, and ${server} does not offer SMTPUTF8`);
  }
  const max = Number(ext.get('SIZE') ?? '');
  if (ext.has('SIZE') && Number.isSafeInteger(max) && max > 0 && tx.size > max) {
    return refusal(552, '5.3.4', `Message size ${tx.size} exceeds the fixed maximum message size of ${server} (${max})`);
  }
  return null;
}

/** MAIL FROM with the parameters the server offers and the message needs. */
export function mailCommand(tx: TxEnvelope, ext: Map<string, string>): string {
  let line = `MAIL FROM:<${tx.from}>`;
  if (ext.has('SIZE')) line += ` SIZE=${tx.size}`;
  if (tx.body === '8BITMIME' && ext.has('8BITMIME')) line += ' BODY=8BITMIME';
  if ((tx.smtputf8 || nonAscii(tx.from) || tx.recipients.some((r) => nonAscii(r.address))) && ext.has('SMTPUTF8')) line += ' SMTPUTF8';
  if (ext.has('DSN')) {
    if (tx.ret) line += ` RET=${tx.ret}`;
    if (tx.envid) line += ` ENVID=${encodeXtext(tx.envid)}`;
  }
  return line;
}

/** RCPT TO with NOTIFY/ORCPT when the server offers DSN. */
export function rcptCommand(r: TxRecipient, ext: Map<string, string>): string {
  let line = `RCPT TO:<${r.address}>`;
  if (ext.has('DSN')) {
    const notify = (r.notify ?? []).map((n) => n.toUpperCase()).filter((n) => /^(NEVER|SUCCESS|FAILURE|DELAY)$/.test(n));
    if (notify.length) line += ` NOTIFY=${notify.join(',')}`;
    if (r.orcpt) line += ` ORCPT=${encodeOrcpt(r.orcpt)}`;
  }
  return line;
}
