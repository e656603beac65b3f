/**
 * MIME structure helpers: IMAP section paths (RFC 3501 §6.4.5), boundary lines (RFC 2046
 * §5.1.1) and what kind of entity a header announces.
 */
import type { ContentType } from './header-values.js';

/**
 * Where an entity sits, which decides its path once its type is known:
 * - `part`: part number n of a multipart, with its full path already known;
 * - `body`: the top-level entity of a message (the whole message when prefix is "", else
 *   the message encapsulated in the message/rfc822 part `prefix`).
 */
export type Slot = { kind: 'part'; path: string } | { kind: 'body'; prefix: string };

/**
 * The entity's path, and the prefix its own parts are numbered under when it is a multipart
 * (or the prefix of its encapsulated message when it is a message/rfc822).
 */
export function entityPath(slot: Slot, multipart: boolean): { path: string; numBase: string } {
  if (slot.kind === 'part') return { path: slot.path, numBase: slot.path };
  const p = slot.prefix;
  if (multipart) return { path: p ? `${p}.TEXT` : 'TEXT', numBase: p };
  const path = p ? `${p}.1` : '1';
  return { path, numBase: path };
}

/** The slot of part number n (from 1) of a multipart whose parts are numbered under numBase. */
export function partSlot(numBase: string, n: number): Slot {
  return { kind: 'part', path: numBase ? `${numBase}.${n}` : String(n) };
}

/** The slot of the message encapsulated in the message/rfc822 entity at `path`. */
export function encapsulatedSlot(path: string): Slot {
  return { kind: 'body', prefix: path };
}

export const NOT_BOUNDARY = 0;
export const DELIMITER = 1;
export const CLOSE_DELIMITER = 2;

/**
 * Whether a line is the delimiter ("--boundary") or close delimiter ("--boundary--") of
 * `delim` (which holds "--boundary"), trailing spaces and tabs (transport padding) allowed.
 */
export function matchBoundary(line: Buffer, delim: Buffer): number {
  const n = delim.length;
  if (line.length < n || line.compare(delim, 0, n, 0, n) !== 0) return NOT_BOUNDARY;
  let i = n;
  let kind = DELIMITER;
  if (line.length >= n + 2 && line[n] === 45 && line[n + 1] === 45) {
    kind = CLOSE_DELIMITER;
    i = n + 2;
  }
  for (; i < line.length; i++) if (line[i] !== 32 && line[i] !== 9) return NOT_BOUNDARY;
  return kind;
}

/** Transfer encodings under which a message/rfc822 body is itself a parseable message. */
export function isIdentityEncoding(cte: string): boolean {
  return cte === '' || cte === '7bit' || cte === '8bit' || cte === 'binary';
}

export function isEncapsulatedMessage(ct: ContentType): boolean {
  return ct.type === 'message' && (ct.subtype === 'rfc822' || ct.subtype === 'global');
}

/** What a leaf part's content is scanned as. */
export type LeafRole = 'plain' | 'text' | 'uu-wrapper' | 'binhex-wrapper' | 'tnef';

const UU_ENCODINGS = new Set(['x-uuencode', 'uuencode', 'x-uue', 'uue']);
const UU_TYPES = new Set(['application/x-uuencode', 'application/x-uue', 'text/x-uuencode']);
const BINHEX_TYPES = new Set(['application/mac-binhex40', 'application/mac-binhex', 'application/x-binhex40', 'application/x-mac-binhex40']);
const TNEF_TYPES = new Set(['application/ms-tnef', 'application/vnd.ms-tnef']);

export function isUuEncoding(cte: string): boolean {
  return UU_ENCODINGS.has(cte);
}

export function leafRole(ct: ContentType, cte: string, names: string[]): LeafRole {
  const full = `${ct.type}/${ct.subtype}`;
  if (TNEF_TYPES.has(full) || names.some((n) => n.toLowerCase() === 'winmail.dat')) return 'tnef';
  if (BINHEX_TYPES.has(full)) return 'binhex-wrapper';
  if (UU_ENCODINGS.has(cte) || UU_TYPES.has(full)) return 'uu-wrapper';
  if (ct.type === 'text') return 'text';
  return 'plain';
}
