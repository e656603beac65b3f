import { open, type FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import type { Envelope, EnvelopeRecipient } from '../queue/envelope.js';
import { rfc5322Date } from '../smtp/received.js';

/**
 * Delivery status notifications (RFC 3464 in a multipart/report of RFC 6522, asked for with
 * the RFC 3461 parameters kept in the envelope), sent to the return path when a recipient
 * fails, is delayed or (on request) is delivered (R4). Internationalized messages get the
 * RFC 6533 types. The original message is read from its queue file only as far as it is
 * included, chunk by chunk.
 */

/** RFC 3464 §2.3.3 actions. `relayed`/`expanded`/`delivered` are success reports (NOTIFY=SUCCESS). */
export type DsnAction = 'failed' | 'delayed' | 'delivered' | 'relayed' | 'expanded';

/** What happened to one recipient, as the sender saw it. */
export interface RecipientOutcome {
  /** The address delivery was tried to (Final-Recipient). */
  address: string;
  /** The RCPT TO address an alias expanded into `address`; taken from the envelope when absent. */
  original?: string;
  /** RFC 3461 ORCPT as stored (`addr-type;address`, xtext-decoded); taken from the envelope when absent. */
  orcpt?: string;
  /** RFC 3461 NOTIFY; taken from the envelope when absent. */
  notify?: string[];
  action: DsnAction;
  /** RFC 3463 status such as `5.1.1`; a malformed one becomes `5.0.0`/`4.0.0`/`2.0.0` by action. */
  status: string;
  /** Host name of the server that answered (Remote-MTA). */
  remoteMta?: string;
  /**
   * The remote reply, all its lines (`550-5.1.1 ...\r\n550 5.1.1 ...`), or an already typed
   * value such as `smtp; 550 5.1.1 no such user`. Text that starts with a reply code becomes
   * `smtp;`, other text (a local reason: "connection timed out") `X-Moonpost;`.
   */
  diagnostic?: string;
  lastAttempt?: Date;
  /** For `delayed`: when the sender gives up. */
  willRetryUntil?: Date;
}

export interface DsnPolicy {
  /**
   * Without a NOTIFY parameter RFC 3461 §4.1 lets the MTA send delay notices or not; true
   * (the default) sends them, false only failures.
   */
  delayWithoutNotify?: boolean;
}

export interface DsnOptions extends DsnPolicy {
  envelope: Envelope;
  /** The queue file; the message proper starts at `envelope.headerOffset`. */
  messagePath: string;
  /** This server's host name: Reporting-MTA, the From address's domain, the Message-ID. */
  reportingMta: string;
  outcomes: RecipientOutcome[];
  now?: Date;
  /** A larger original is returned as its header only (default 10 MiB). */
  maxOriginalBytes?: number;
  /** At most this much of the original's header is returned (default 1 MiB). */
  maxHeaderBytes?: number;
  /**
   * `auto` (default): the full message for a report with a failure unless RET=HDRS, its header
   * for delay and success reports (RFC 3461 §4.3); the others force one form.
   */
  returnContent?: 'auto' | 'full' | 'headers' | 'none';
  /** For tests and idempotent retries; default a fresh one at `reportingMta`. */
  messageId?: string;
  /** For tests; default random. */
  boundary?: string;
}

/** A built notification: what to queue and how. */
export interface DsnMessage {
  /** Envelope of the DSN: always the null sender (RFC 3461 §6.2), to the original return path. */
  sender: '';
  recipient: string;
  /** BODY= to send it with: 8BITMIME when an included part carries 8-bit text. */
  body: '7BIT' | '8BITMIME';
  /** The return path is non-ASCII: needs SMTPUTF8 (RFC 6531). */
  smtputf8: boolean;
  messageId: string;
  subject: string;
  /** How much of the original is inside. */
  returned: 'full' | 'headers' | 'none';
  /** The recipients reported, with their envelope DSN data filled in. */
  reported: RecipientOutcome[];
  /** Exact size of the whole notification in bytes. */
  size: number;
  /**
   * The notification's bytes in order; an included original is read from `messagePath` as
   * the chunks are consumed, so the file must stay until then. Can be called more than once.
   */
  chunks(): AsyncGenerator<Buffer>;
}

const DEFAULT_MAX_ORIGINAL = 10 * 1024 * 1024;
const DEFAULT_MAX_HEADER = 1024 * 1024;
const CHUNK = 64 * 1024;
const CRLF = '\r\n';

// ---------------------------------------------------------------- who gets a notification

/** RFC 3461 §4.1: does a recipient with this NOTIFY want a report of this action? */
export function wantsNotification(notify: string[] | undefined, action: DsnAction, policy: DsnPolicy = {}): boolean {
  const n = notify?.length ? notify.map((s) => s.toUpperCase()) : undefined;
  if (n?.includes('NEVER')) return false;
  switch (action) {
    case 'failed':
      return !n || n.includes('FAILURE');
    case 'delayed':
      return n ? n.includes('DELAY') : (policy.delayWithoutNotify ?? true);
    default:
      // Success reports only on explicit request.
      return !!n?.includes('SUCCESS');
  }
}

function envelopeRecipient(env: Envelope, address: string): EnvelopeRecipient | undefined {
  return env.recipients.find((r) => r.address === address) ?? env.recipients.find((r) => r.address.toLowerCase() === address.toLowerCase());
}

/**
 * The outcomes to report, each completed from its envelope recipient (NOTIFY, ORCPT, the
 * alias it came from). Empty for the null return path `<>` (no DSN about a DSN, R4) and for
 * recipients whose NOTIFY does not ask for this action.
 */
export function selectDsnRecipients(env: Envelope, outcomes: RecipientOutcome[], policy: DsnPolicy = {}): RecipientOutcome[] {
  if (!env.sender) return [];
  const out: RecipientOutcome[] = [];
  for (const o of outcomes) {
    const r = envelopeRecipient(env, o.address);
    const full: RecipientOutcome = {
      ...o,
      notify: o.notify ?? r?.dsn?.notify,
      orcpt: o.orcpt ?? r?.dsn?.orcpt,
      original: o.original ?? r?.original,
    };
    if (wantsNotification(full.notify, full.action, policy)) out.push(full);
  }
  return out;
}

// ---------------------------------------------------------------- text helpers

const NON_ASCII = /[^\x00-\x7f]/;
const hasNonAscii = (s: string): boolean => NON_ASCII.test(s);

/** One line of header text: no control characters, no line breaks. */
function oneLine(s: string): string {
  return s.replace(/[\r\n\t]+/g, ' ').replace(/[\x00-\x1f\x7f]/g, '');
}

/** RFC 6533 utf-8-addr-xtext: printable ASCII but `+`, `=`, `\` as is, the rest as `\x{HEX}`. */
export function utf8AddrXtext(s: string): string {
  let out = '';
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    out += cp >= 0x21 && cp <= 0x7e && ch !== '+' && ch !== '=' && ch !== '\\' ? ch : `\\x{${cp.toString(16).toUpperCase()}}`;
  }
  return out;
}

/** `rfc822; addr`, or for a non-ASCII address `utf-8; addr` (raw in the global form, escaped otherwise). */
function typedAddress(address: string, global: boolean): string {
  const a = oneLine(address);
  if (!hasNonAscii(a)) return `rfc822; ${a}`;
  return `utf-8; ${global ? a : utf8AddrXtext(a)}`;
}

/** An ORCPT value (`type;address`) for Original-Recipient. */
function typedOrcpt(orcpt: string, global: boolean): string {
  const i = orcpt.indexOf(';');
  const type = oneLine(orcpt.slice(0, i)).trim() || 'rfc822';
  const addr = oneLine(orcpt.slice(i + 1)).trim();
  if (!hasNonAscii(addr)) return `${type}; ${addr}`;
  return global ? `${type}; ${addr}` : `utf-8; ${utf8AddrXtext(addr)}`;
}

/** Splits a diagnostic into its type and reply lines. */
function splitDiagnostic(diagnostic: string): { type: string; lines: string[] } {
  const typed = /^([A-Za-z][A-Za-z0-9-]*)\s*;\s*([\s\S]*)$/.exec(diagnostic.trim());
  const type = typed ? typed[1] : /^\d{3}/.test(diagnostic.trim()) ? 'smtp' : 'X-Moonpost';
  const text = typed ? typed[2] : diagnostic.trim();
  const lines = text
    .split(/\r\n|\r|\n/)
    .map((l) => oneLine(l).trim())
    .filter((l) => l.length);
  return { type, lines };
}

/**
 * Folds a header field before spaces so lines stay near 78 octets (a longer word stays
 * whole); unfolding gives back the same text.
 */
function fold(field: string): string {
  const out: string[] = [];
  for (const logical of field.split(CRLF)) {
    let line = logical;
    while (line.length > 78) {
      const start = /^\s*/.exec(line)![0].length;
      const cut = line.lastIndexOf(' ', 78);
      if (cut <= start) break;
      out.push(line.slice(0, cut));
      line = line.slice(cut);
    }
    out.push(line);
  }
  return out.join(CRLF);
}

function diagnosticField(diagnostic: string, global: boolean): string | undefined {
  const { type, lines } = splitDiagnostic(diagnostic);
  if (!lines.length) return undefined;
  const clean = lines.map((l) => (global ? l : l.replace(/[^\x20-\x7e]/g, '?')));
  // Each reply line on its own folded line, as Postfix writes them.
  return fold(`Diagnostic-Code: ${type}; ${clean.join(CRLF + '    ')}`);
}

function validStatus(status: string, action: DsnAction): string {
  if (/^[245]\.\d{1,3}\.\d{1,3}$/.test(status)) return status;
  return action === 'failed' ? '5.0.0' : action === 'delayed' ? '4.0.0' : '2.0.0';
}

/** Quoted-printable (RFC 2045 §6.7) of UTF-8 text with CRLF line ends. */
function quotedPrintable(text: string): string {
  const out: string[] = [];
  for (const line of text.split(CRLF)) {
    const bytes = Buffer.from(line, 'utf8');
    let cur = '';
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i];
      const last = i === bytes.length - 1;
      const lit = (b >= 33 && b <= 126 && b !== 61) || ((b === 32 || b === 9) && !last);
      const tok = lit ? String.fromCharCode(b) : `=${b.toString(16).toUpperCase().padStart(2, '0')}`;
      if (cur.length + tok.length > 75) {
        out.push(cur + '=');
        cur = '';
      }
      cur += tok;
    }
    out.push(cur);
  }
  return out.join(CRLF);
}

// ---------------------------------------------------------------- reading the original

interface HeaderBlock {
  /** The header fields, ending with a line break; without the empty line. */
  header: Buffer;
  /** The header went on beyond the cap and was cut at a line end. */
  truncated: boolean;
}

/** Reads the header of the message starting at `start`: up to the first empty line. */
async function readHeader(fh: FileHandle, start: number, end: number, max: number): Promise<HeaderBlock> {
  const parts: Buffer[] = [];
  let have = 0;
  let pos = start;
  let searchFrom = 0;
  let all = Buffer.alloc(0);
  while (pos < end && have < max + 4) {
    const buf = Buffer.allocUnsafe(Math.min(CHUNK, end - pos, max + 4 - have));
    const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
    if (!bytesRead) break;
    parts.push(buf.subarray(0, bytesRead));
    have += bytesRead;
    pos += bytesRead;
    all = Buffer.concat(parts, have);
    // An empty first line means an empty header.
    if (all[0] === 0x0a || (all[0] === 0x0d && all[1] === 0x0a)) return { header: Buffer.alloc(0), truncated: false };
    // The header ends at the first empty line (CRLF CRLF; a bare LF LF in a foreign file).
    const crlf = all.indexOf('\r\n\r\n', searchFrom);
    const lf = all.indexOf('\n\n', searchFrom);
    const cuts = [crlf >= 0 ? crlf + 2 : -1, lf >= 0 ? lf + 1 : -1].filter((c) => c >= 0);
    if (cuts.length) {
      const cut = Math.min(...cuts);
      if (cut <= max) return { header: all.subarray(0, cut), truncated: false };
      break;
    }
    searchFrom = Math.max(0, have - 3);
  }
  if (pos >= end && have <= max) {
    // No body: the whole message is header.
    const header = all.length && all[all.length - 1] !== 0x0a ? Buffer.concat([all, Buffer.from(CRLF)]) : all;
    return { header, truncated: false };
  }
  const lastLf = all.lastIndexOf(0x0a, max - 1);
  return { header: all.subarray(0, lastLf + 1), truncated: true };
}

/** Whether bytes `start..end` of the file hold any octet above 127. */
async function has8bit(fh: FileHandle, start: number, end: number): Promise<boolean> {
  const buf = Buffer.allocUnsafe(CHUNK);
  for (let pos = start; pos < end; ) {
    const { bytesRead } = await fh.read(buf, 0, Math.min(CHUNK, end - pos), pos);
    if (!bytesRead) break;
    for (let i = 0; i < bytesRead; i++) if (buf[i] > 0x7f) return true;
    pos += bytesRead;
  }
  return false;
}

async function* readRange(path: string, start: number, end: number): AsyncGenerator<Buffer> {
  const fh = await open(path, 'r');
  try {
    for (let pos = start; pos < end; ) {
      const buf = Buffer.allocUnsafe(Math.min(CHUNK, end - pos));
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (!bytesRead) throw new Error(`${path}: message file shorter than expected`);
      pos += bytesRead;
      yield bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
    }
  } finally {
    await fh.close();
  }
}

interface Original {
  returned: 'full' | 'headers' | 'none';
  header: Buffer;
  headerTruncated: boolean;
  header8bit: boolean;
  body8bit: boolean;
  /** For `full`: the byte range of the message in the file. */
  start: number;
  end: number;
  /** Why less than asked for was returned, for the text part. */
  note?: string;
}

async function loadOriginal(path: string, env: Envelope, want: 'full' | 'headers' | 'none', maxFull: number, maxHeader: number): Promise<Original> {
  const none: Original = { returned: 'none', header: Buffer.alloc(0), headerTruncated: false, header8bit: false, body8bit: false, start: 0, end: 0 };
  if (want === 'none') return none;
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch {
    return { ...none, note: 'The original message could not be read, so it is not included.' };
  }
  try {
    const start = env.headerOffset;
    const end = Math.max(start, (await fh.stat()).size);
    const { header, truncated } = await readHeader(fh, start, end, maxHeader);
    const header8bit = header.some((b) => b > 0x7f);
    let returned = want;
    let note: string | undefined;
    if (want === 'full' && end - start > maxFull) {
      returned = 'headers';
      note = `The original message is larger than ${maxFull} bytes, so only its header is included.`;
    } else if (want === 'full' && env.body === 'BINARYMIME') {
      returned = 'headers';
      note = 'The original message has binary content, so only its header is included.';
    }
    const body8bit = returned === 'full' && (env.body === '8BITMIME' || header8bit || (await has8bit(fh, start + header.length, end)));
    return { returned, header, headerTruncated: truncated, header8bit, body8bit, start, end, note };
  } finally {
    await fh.close();
  }
}

// ---------------------------------------------------------------- the notification

const SUBJECTS = {
  failed: 'Undelivered Mail Returned to Sender',
  delayed: 'Delayed Mail (still being retried)',
  success: 'Successful Mail Delivery Report',
};

function humanText(reportingMta: string, reported: RecipientOutcome[], original: Original): string {
  const failed = reported.filter((r) => r.action === 'failed');
  const delayed = reported.filter((r) => r.action === 'delayed');
  const success = reported.filter((r) => r.action !== 'failed' && r.action !== 'delayed');
  const lines: string[] = [`This is the mail system at host ${reportingMta}.`, ''];
  const describe = (r: RecipientOutcome): void => {
    const orig = r.original && r.original !== r.address ? ` (expanded from <${oneLine(r.original)}>)` : '';
    lines.push(`<${oneLine(r.address)}>${orig}:`);
    const diag = r.diagnostic ? splitDiagnostic(r.diagnostic) : undefined;
    if (diag?.lines.length) {
      lines.push(r.remoteMta ? `    host ${oneLine(r.remoteMta)} said:` : '    reason:');
      for (const l of diag.lines) lines.push(`    ${l}`);
    } else {
      lines.push(`    status ${validStatus(r.status, r.action)}`);
    }
    lines.push('');
  };
  if (failed.length) {
    lines.push('Your message could not be delivered to the recipients below, and delivery', 'to them has been given up. The reason is given for each of them.', '');
    failed.forEach(describe);
  }
  if (delayed.length) {
    const until = delayed.map((r) => r.willRetryUntil).find((d) => d);
    lines.push(
      'Your message has not been delivered yet to the recipients below. It stays',
      until ? `queued and delivery will be tried again until ${rfc5322Date(until)}.` : 'queued and delivery will be tried again.',
      'You do not need to send it again; you will be told if delivery finally fails.',
      '',
    );
    delayed.forEach(describe);
  }
  if (success.length) {
    lines.push('Your message was handed on as you asked to be told (NOTIFY=SUCCESS):', '');
    for (const r of success) {
      const how = r.action === 'relayed' ? 'relayed to a system that sends no further reports' : r.action === 'expanded' ? 'expanded to further recipients' : 'delivered';
      lines.push(`<${oneLine(r.address)}>: ${how}${r.remoteMta ? ` (${oneLine(r.remoteMta)})` : ''}`);
    }
    lines.push('');
  }
  if (original.note) lines.push(original.note, '');
  return lines.join(CRLF);
}

function statusPart(env: Envelope, reportingMta: string, reported: RecipientOutcome[], global: boolean): string {
  const groups: string[] = [];
  const perMessage: string[] = [];
  // Free text: UTF-8 only in the global form, else ASCII with `?` for the rest.
  const t = (s: string): string => (global ? oneLine(s) : oneLine(s).replace(/[^\x20-\x7e]/g, '?'));
  if (env.dsn?.envid) perMessage.push(`Original-Envelope-Id: ${t(env.dsn.envid)}`);
  perMessage.push(`Reporting-MTA: dns; ${t(reportingMta)}`);
  // An extension field (RFC 3464 §3) so the administrator can find the message in the logs.
  if (env.id) perMessage.push(`X-Moonpost-Queue-ID: ${t(env.id)}`);
  const arrival = new Date(env.received);
  if (!Number.isNaN(arrival.getTime())) perMessage.push(`Arrival-Date: ${rfc5322Date(arrival)}`);
  groups.push(perMessage.join(CRLF));
  for (const r of reported) {
    const f: string[] = [];
    if (r.orcpt && r.orcpt.includes(';')) f.push(`Original-Recipient: ${typedOrcpt(r.orcpt, global)}`);
    else if (r.original && r.original !== r.address) f.push(`Original-Recipient: ${typedAddress(r.original, global)}`);
    f.push(`Final-Recipient: ${typedAddress(r.address, global)}`);
    f.push(`Action: ${r.action}`);
    f.push(`Status: ${validStatus(r.status, r.action)}`);
    if (r.remoteMta) f.push(`Remote-MTA: dns; ${t(r.remoteMta)}`);
    const diag = r.diagnostic ? diagnosticField(r.diagnostic, global) : undefined;
    if (diag) f.push(diag);
    if (r.lastAttempt) f.push(`Last-Attempt-Date: ${rfc5322Date(r.lastAttempt)}`);
    if (r.action === 'delayed' && r.willRetryUntil) f.push(`Will-Retry-Until: ${rfc5322Date(r.willRetryUntil)}`);
    groups.push(f.join(CRLF));
  }
  return groups.join(CRLF + CRLF) + CRLF;
}

/**
 * Prepares the notification for `outcomes` (after `selectDsnRecipients`), or null when no
 * one is to be told. Reads the original's header (and, to label the DSN 7bit or 8bit, scans
 * an included body); the full body is read only by `chunks()`.
 */
export async function prepareDsn(opts: DsnOptions): Promise<DsnMessage | null> {
  const env = opts.envelope;
  const reported = selectDsnRecipients(env, opts.outcomes, opts);
  if (!reported.length) return null;

  const hasFailure = reported.some((r) => r.action === 'failed');
  const hasDelay = reported.some((r) => r.action === 'delayed');
  const mode = opts.returnContent ?? 'auto';
  const want = mode !== 'auto' ? mode : hasFailure ? (env.dsn?.ret === 'HDRS' ? 'headers' : 'full') : 'headers';
  const original = await loadOriginal(
    opts.messagePath,
    env,
    want,
    opts.maxOriginalBytes ?? DEFAULT_MAX_ORIGINAL,
    opts.maxHeaderBytes ?? DEFAULT_MAX_HEADER,
  );

  const now = opts.now ?? new Date();
  const host = oneLine(opts.reportingMta);
  const boundary = opts.boundary ?? `=_moonpost_${randomBytes(12).toString('hex')}`;
  const messageId = opts.messageId ?? `<${now.getTime().toString(36)}.${randomBytes(8).toString('hex')}@${host}>`;
  const subject = hasFailure ? SUBJECTS.failed : hasDelay ? SUBJECTS.delayed : SUBJECTS.success;
  const returnPath = oneLine(env.sender);

  // RFC 6533 types only when the original was sent with SMTPUTF8 and has UTF-8 to carry.
  const statusText = statusPart(env, host, reported, false);
  const globalText = statusPart(env, host, reported, true);
  const globalStatus = !!env.smtputf8 && hasNonAscii(globalText);
  const status = globalStatus ? globalText : statusText;
  const globalOriginal = !!env.smtputf8 && original.header8bit;

  const text = humanText(host, reported, original);
  const textAscii = !hasNonAscii(text);
  const originalIs8bit = original.returned === 'full' ? original.body8bit : original.header8bit;
  const eightBit = (globalStatus && hasNonAscii(status)) || (original.returned !== 'none' && originalIs8bit);

  const head: string[] = [
    `From: Mail Delivery System <MAILER-DAEMON@${host}>`,
    `To: <${returnPath}>`,
    `Subject: ${subject}`,
    `Date: ${rfc5322Date(now)}`,
    `Message-ID: ${messageId}`,
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status;${CRLF}\tboundary="${boundary}"`,
  ];
  if (eightBit) head.push('Content-Transfer-Encoding: 8bit');
  head.push('', 'This is a MIME-encapsulated message.', '');

  const delimiter = `--${boundary}`;
  head.push(delimiter, 'Content-Description: Notification');
  if (textAscii) head.push('Content-Type: text/plain; charset=us-ascii', '', text);
  else head.push('Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: quoted-printable', '', quotedPrintable(text));

  head.push(delimiter, 'Content-Description: Delivery report');
  head.push(`Content-Type: message/${globalStatus ? 'global-' : ''}delivery-status`);
  if (globalStatus && hasNonAscii(status)) head.push('Content-Transfer-Encoding: 8bit');
  head.push('', status);

  if (original.returned !== 'none') {
    head.push(delimiter);
    if (original.returned === 'full') {
      head.push('Content-Description: Undelivered Message', `Content-Type: message/${globalOriginal ? 'global' : 'rfc822'}`);
    } else {
      head.push('Content-Description: Undelivered Message Headers', `Content-Type: ${globalOriginal ? 'message/global-headers' : 'text/rfc822-headers'}`);
    }
    head.push(`Content-Transfer-Encoding: ${originalIs8bit ? '8bit' : '7bit'}`, '');
  }
  // The CRLF before each delimiter belongs to the delimiter (RFC 2046 §5.1.1).
  const headBuf = Buffer.from(head.join(CRLF) + (original.returned === 'none' ? '' : CRLF), 'utf8');
  const tailBuf = Buffer.from(`${CRLF}--${boundary}--${CRLF}`, 'utf8');
  const headerBuf = original.returned === 'headers' ? original.header : Buffer.alloc(0);
  const fullLen = original.returned === 'full' ? original.end - original.start : 0;
  const path = opts.messagePath;

  return {
    sender: '',
    recipient: env.sender,
    body: eightBit ? '8BITMIME' : '7BIT',
    smtputf8: hasNonAscii(returnPath),
    messageId,
    subject,
    returned: original.returned,
    reported,
    size: headBuf.length + headerBuf.length + fullLen + tailBuf.length,
    async *chunks() {
      yield headBuf;
      if (headerBuf.length) yield headerBuf;
      if (fullLen) yield* readRange(path, original.start, original.end);
      yield tailBuf;
    },
  };
}

/** The whole notification in memory (bounded by `maxOriginalBytes`), or null when no one is to be told. */
export async function buildDsn(opts: DsnOptions): Promise<(DsnMessage & { bytes: Buffer }) | null> {
  const dsn = await prepareDsn(opts);
  if (!dsn) return null;
  const parts: Buffer[] = [];
  for await (const c of dsn.chunks()) parts.push(c);
  return { ...dsn, bytes: Buffer.concat(parts, dsn.size) };
}
