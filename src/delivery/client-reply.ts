/** An SMTP reply as the client saw it, possibly replaced by the onReply hook (R3). */
export interface ClientReply {
  code: number;
  /** RFC 3463 enhanced status of the first line, when it has one. */
  enhanced?: string;
  /** Every line with its code, as received ("250-SIZE 1000", "250 OK"). */
  lines: string[];
  /** The lines joined by CRLF: ReturnCodeHandler's FullResponse. */
  full: string;
  /** The final line: ReturnCodeHandler's LastLine. */
  last: string;
  /** The server's own reply when the onReply hook replaced it. */
  original?: ClientReply;
}

/**
 * ReturnCodeHandler (R3): sees every reply with the command it answers (`""` for the greeting,
 * `"."` for the end of data, AUTH arguments masked). A returned string that starts with a
 * three-digit code replaces the reply; anything else (nil, "", text without a code) keeps it.
 */
export type ReplyHook = (
  lastCommand: string,
  fullResponse: string,
  lastLine: string,
) => string | null | undefined | void | Promise<string | null | undefined | void>;

const MAX_LINE = 8192;
const MAX_LINES = 1000;

export class ReplyFormatError extends Error {
  override readonly name = 'ReplyFormatError';
}

function enhancedOf(code: number, text: string): string | undefined {
  const m = /^([245])\.\d{1,3}\.\d{1,3}(?=\s|$)/.exec(text);
  return m && m[1] === String(code)[0] ? m[0] : undefined;
}

export function makeReply(lines: string[]): ClientReply {
  const code = Number(lines[0].slice(0, 3));
  return { code, enhanced: enhancedOf(code, lines[0].slice(4)), lines, full: lines.join('\r\n'), last: lines[lines.length - 1] };
}

/**
 * Splits what the server sends into replies (RFC 5321 §4.2): `ddd-text` continuation lines
 * up to a `ddd text` (or bare `ddd`) line. LF alone ends a line too; bytes are read as UTF-8.
 */
export class ReplyParser {
  private partial: Buffer[] = [];
  private partialLen = 0;
  private lines: string[] = [];

  /** Returns the replies completed by this chunk; throws ReplyFormatError on garbage. */
  push(chunk: Buffer): ClientReply[] {
    const out: ClientReply[] = [];
    let start = 0;
    for (;;) {
      const lf = chunk.indexOf(0x0a, start);
      if (lf < 0) break;
      let piece = chunk.subarray(start, lf);
      if (this.partialLen) {
        piece = Buffer.concat([...this.partial, piece]);
        this.partial = [];
        this.partialLen = 0;
      }
      start = lf + 1;
      if (piece.length > MAX_LINE) throw new ReplyFormatError(`reply line over ${MAX_LINE} bytes`);
      const line = piece.toString('utf8').replace(/\r$/, '');
      const r = this.line(line);
      if (r) out.push(r);
    }
    if (start < chunk.length) {
      this.partial.push(chunk.subarray(start));
      this.partialLen += chunk.length - start;
      if (this.partialLen > MAX_LINE) throw new ReplyFormatError(`reply line over ${MAX_LINE} bytes`);
    }
    return out;
  }

  /** Whether bytes were received that do not make a complete reply yet. */
  get pending(): boolean {
    return this.partialLen > 0 || this.lines.length > 0;
  }

  private line(line: string): ClientReply | null {
    const m = /^(\d{3})([ -]|$)/.exec(line);
    if (!m) throw new ReplyFormatError(`malformed reply line ${JSON.stringify(line.slice(0, 80))}`);
    if (this.lines.length && line.slice(0, 3) !== this.lines[0].slice(0, 3)) {
      throw new ReplyFormatError(`reply code changed within a multi-line reply: ${JSON.stringify(line.slice(0, 80))}`);
    }
    this.lines.push(line);
    if (this.lines.length > MAX_LINES) throw new ReplyFormatError(`reply over ${MAX_LINES} lines`);
    if (m[2] === '-') return null;
    const r = makeReply(this.lines);
    this.lines = [];
    return r;
  }
}

/**
 * A hook's replacement text as a reply: CRLF or LF separate lines; the first must start with a
 * code from 200 to 599; lines without a code get the first line's; continuation marks are
 * normalised (`ddd-` on all but the last). Null when the text does not start with a code.
 */
export function replyFromText(text: string): ClientReply | null {
  const raw = text.split(/\r?\n/);
  while (raw.length > 1 && raw[raw.length - 1] === '') raw.pop();
  const first = /^([2-5]\d\d)(?:[ -]|$)/.exec(raw[0]);
  if (!first) return null;
  const code = first[1];
  const lines = raw.map((l, i) => {
    const body = /^\d{3}(?:[ -]|$)/.test(l) ? l.slice(4) : l;
    const sep = i === raw.length - 1 ? ' ' : '-';
    return `${code}${sep}${body.replace(/[\r\n\0]/g, ' ')}`.trimEnd();
  });
  return makeReply(lines);
}

/** Passes a reply through the hook; returns the reply the client acts on. */
export async function applyReplyHook(hook: ReplyHook | undefined, lastCommand: string, reply: ClientReply): Promise<ClientReply> {
  if (!hook) return reply;
  const returned = await hook(lastCommand, reply.full, reply.last);
  if (typeof returned !== 'string' || returned === '') return reply;
  const replaced = replyFromText(returned);
  return replaced ? { ...replaced, original: reply } : reply;
}

/** The class digit: 2 positive completion, 3 intermediate, 4 transient, 5 permanent. */
export function replyClass(r: ClientReply): number {
  return Math.floor(r.code / 100);
}
