/** An SMTP reply: a code, an optional RFC 3463 enhanced status, and one or more text lines. */
export interface Reply {
  code: number;
  enhanced?: string;
  lines: string[];
  /** Close the connection after sending this reply. */
  close?: boolean;
}

const MAX_LINE = 512;

export function reply(code: number, enhanced: string | undefined, ...lines: string[]): Reply {
  return { code, enhanced, lines: lines.length ? lines : [''] };
}

/** The class digit of an enhanced status code must agree with the reply code's (2, 4 or 5). */
function enhancedFor(code: number, enhanced: string | undefined): string | undefined {
  if (!enhanced) return undefined;
  const cls = Math.floor(code / 100);
  if (cls !== 2 && cls !== 4 && cls !== 5) return undefined;
  return `${cls}${enhanced.slice(1)}`;
}

/** Removes everything that could end a reply line early or inject another one. */
function clean(text: string): string {
  return text.replace(/[\r\n\x00]/g, ' ');
}

/**
 * Renders a reply as wire text: `ddd-` continuation lines, `ddd ` on the last, enhanced status
 * on every line when enabled, no line over 512 octets including CRLF.
 */
export function formatReply(r: Reply, enhancedCodes = true): string {
  const enh = enhancedCodes ? enhancedFor(r.code, r.enhanced) : undefined;
  const prefixLen = 4 + (enh ? enh.length + 1 : 0);
  const lines = r.lines.length ? r.lines : [''];
  let out = '';
  for (let i = 0; i < lines.length; i++) {
    let text = clean(lines[i]);
    const room = MAX_LINE - 2 - prefixLen;
    if (Buffer.byteLength(text) > room) text = truncateUtf8(text, room);
    const sep = i === lines.length - 1 ? ' ' : '-';
    out += `${r.code}${sep}${enh ? `${enh} ` : ''}${text}`.trimEnd() + '\r\n';
  }
  return out;
}

function truncateUtf8(text: string, maxBytes: number): string {
  const buf = Buffer.from(text);
  let end = maxBytes;
  // Never cut inside a UTF-8 sequence.
  while (end > 0 && (buf[end] & 0xc0) === 0x80) end--;
  return buf.subarray(0, end).toString();
}

/**
 * Parses a reply written as text (by an administrator's script, S5): `ddd text` lines separated
 * by CRLF or LF. Returns null when it does not start with a valid code.
 */
export function parseReplyText(text: string): Reply | null {
  const raw = text.split(/\r?\n|\r/).filter((l, i, a) => l !== '' || i < a.length - 1);
  const m = /^([2-5]\d\d)(?:[ -](.*))?$/.exec(raw[0] ?? '');
  if (!m) return null;
  const code = Number(m[1]);
  const lines: string[] = [];
  let enhanced: string | undefined;
  for (const [i, line] of raw.entries()) {
    let body = line;
    const lm = /^(\d\d\d)(?:[ -](.*))?$/.exec(line);
    if (lm) body = lm[2] ?? '';
    const em = /^([245]\.\d{1,3}\.\d{1,3})(?: (.*)|$)/.exec(body);
    if (em) {
      if (i === 0) enhanced = em[1];
      body = em[2] ?? '';
    }
    lines.push(body);
  }
  return { code, enhanced, lines };
}
