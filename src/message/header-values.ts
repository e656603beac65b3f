/**
 * Reading the values of the fields the analysis needs: Content-Type, Content-Disposition,
 * Content-Transfer-Encoding (RFC 2045, 2183, 2231), Subject (RFC 2047) and address lists
 * (RFC 5322 §3.4). Decoding is libmime's, address parsing nodemailer's addressparser; both are
 * wrapped so that no input makes them throw.
 */
import libmime from 'libmime';
import addressparser from 'nodemailer/lib/addressparser';

export interface ContentType {
  type: string;
  subtype: string;
  params: Record<string, string>;
  /** Names of params already decoded by libmime (RFC 2231), not to be RFC 2047-decoded again. */
  decoded: ReadonlySet<string>;
}

const EMPTY: ReadonlySet<string> = new Set();

function parseValue(value: string): { value: string; params: Record<string, string>; decoded: ReadonlySet<string> } {
  try {
    const parsed = libmime.parseHeaderValue(value, { stripComments: true });
    const params: Record<string, string> = Object.create(null);
    for (const [k, v] of Object.entries(parsed.params ?? {})) if (typeof v === 'string') params[k.toLowerCase()] = v;
    const decodedList = (parsed as { decodedParams?: unknown }).decodedParams;
    const decoded = Array.isArray(decodedList) ? new Set(decodedList.map((k) => String(k).toLowerCase())) : EMPTY;
    return { value: String(parsed.value ?? '').trim(), params, decoded };
  } catch {
    return { value: value.split(';')[0].trim(), params: Object.create(null), decoded: EMPTY };
  }
}

/** Content-Type; `undefined` or an empty value gives `fallback` ("text/plain" by RFC 2045 §5.2). */
export function parseContentType(value: string | undefined, fallback: string): ContentType {
  const v = value === undefined ? { value: '', params: Object.create(null), decoded: EMPTY } : parseValue(value);
  const full = (v.value || fallback).toLowerCase();
  const slash = full.indexOf('/');
  const type = (slash < 0 ? full : full.slice(0, slash)).trim();
  const subtype = slash < 0 ? '' : full.slice(slash + 1).trim();
  return { type, subtype, params: v.params, decoded: v.decoded };
}

export interface ContentDisposition {
  disposition: string;
  params: Record<string, string>;
  decoded: ReadonlySet<string>;
}

export function parseContentDisposition(value: string | undefined): ContentDisposition {
  if (value === undefined) return { disposition: '', params: Object.create(null), decoded: EMPTY };
  const v = parseValue(value);
  return { disposition: v.value.toLowerCase(), params: v.params, decoded: v.decoded };
}

/** RFC 2047 encoded words decoded; text without them comes back as it is. */
export function decodeWords(text: string): string {
  if (!text.includes('=?')) return text;
  try {
    return libmime.decodeWords(text);
  } catch {
    return text;
  }
}

/**
 * A file name parameter: RFC 2231 (done by libmime's parser) or, although RFC 2047 forbids
 * it in parameters, encoded words as most mail programs write them.
 */
export function paramFilename(params: Record<string, string>, decoded: ReadonlySet<string>, key: string): string {
  const v = params[key];
  if (v === undefined) return '';
  return decoded.has(key) ? v : decodeWords(v);
}

/** Content-Transfer-Encoding, lower-cased ("" when absent). */
export function parseTransferEncoding(value: string | undefined): string {
  if (value === undefined) return '';
  return value.replace(/\(.*?\)/g, '').trim().toLowerCase();
}

/**
 * The bare addresses of an address list: groups flattened, display names and comments
 * dropped, quoted local parts kept quoted. Entries without "@" (a bare name, an empty group)
 * are left out.
 */
export function parseAddressList(value: string): string[] {
  const out: string[] = [];
  try {
    for (const a of addressparser(value, { flatten: true })) {
      const addr = typeof a.address === 'string' ? a.address.trim() : '';
      if (addr.includes('@')) out.push(addr);
    }
  } catch {
    // best effort: nothing
  }
  return out;
}

/** A MIME type for a file name, from its extension. */
export function mimeTypeForName(name: string): string {
  try {
    return libmime.detectMimeType(name) || 'application/octet-stream';
  } catch {
    return 'application/octet-stream';
  }
}

/** Bytes in a legacy charset (Windows code page, Mac Roman) as text; Latin-1 when the charset is unknown. */
export function decodeCharset(bytes: Buffer, charset: string): string {
  if (bytes.length === 0) return '';
  try {
    return libmime.decodeWord(charset, 'B', bytes.toString('base64'));
  } catch {
    return bytes.toString('latin1');
  }
}
