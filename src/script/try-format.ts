import type { Envelope } from '../queue/envelope.js';
import type { CallResult, LuaValue } from './lua-state.js';

/**
 * The text side of `moonpost script try`: reading a transcript of client lines; rendering hook
 * calls, Lua values, log warnings and queued messages; replacing what changes between runs.
 */

/** One unit of client input. */
export type TranscriptStep =
  | { kind: 'comment'; text: string }
  | { kind: 'command'; line: string }
  /** DATA, the message lines (as sent, dot-stuffing included) and whether a lone "." ended them. */
  | { kind: 'data'; line: string; lines: Buffer[]; terminated: boolean }
  /** BDAT n [LAST] and the n octets that follow it. */
  | { kind: 'bdat'; line: string; lines: Buffer[]; chunk: Buffer };

export class TranscriptError extends Error {
  constructor(
    readonly lineNo: number,
    message: string,
  ) {
    super(`line ${lineNo}: ${message}`);
    this.name = 'TranscriptError';
  }
}

const CRLF = Buffer.from('\r\n');

/** Splits bytes into lines on LF, dropping one CR before it and a final empty line. */
function splitLines(text: Buffer): Buffer[] {
  const lines: Buffer[] = [];
  let pos = 0;
  while (pos < text.length) {
    let lf = text.indexOf(10, pos);
    if (lf < 0) lf = text.length;
    const end = lf > pos && text[lf - 1] === 13 ? lf - 1 : lf;
    lines.push(text.subarray(pos, end));
    pos = lf + 1;
  }
  return lines;
}

/**
 * Parses a transcript: one client line per line. Outside a message, blank lines are skipped
 * and lines starting with `#` are comments. `DATA` is followed by message lines up to a lone
 * `.`; `BDAT n [LAST]` by lines making up exactly n octets, each line counting its CRLF except
 * where the chunk ends right after a line's text.
 */
export function parseTranscript(text: Buffer): TranscriptStep[] {
  const lines = splitLines(text);
  const steps: TranscriptStep[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].toString('utf8');
    if (line.trim() === '') continue;
    if (line.startsWith('#')) {
      steps.push({ kind: 'comment', text: line });
      continue;
    }
    if (line.toUpperCase() === 'DATA') {
      const body: Buffer[] = [];
      let terminated = false;
      while (++i < lines.length) {
        if (lines[i].length === 1 && lines[i][0] === 0x2e) {
          terminated = true;
          break;
        }
        body.push(lines[i]);
      }
      steps.push({ kind: 'data', line, lines: body, terminated });
      continue;
    }
    const bdat = /^BDAT +(\d{1,9})(?: +LAST)? *$/i.exec(line);
    if (bdat) {
      const size = Number(bdat[1]);
      const start = i + 1;
      const body: Buffer[] = [];
      let got = 0;
      while (got < size) {
        if (++i >= lines.length) throw new TranscriptError(start, `BDAT ${size}: the transcript ends after ${got} octets`);
        body.push(lines[i], CRLF);
        got += lines[i].length + 2;
      }
      if (got === size + 2) body.pop();
      else if (got !== size) throw new TranscriptError(i + 1, `BDAT ${size}: the chunk ends inside this line (${got} octets with it)`);
      steps.push({ kind: 'bdat', line, lines: lines.slice(start, i + 1), chunk: Buffer.concat(body) });
      continue;
    }
    steps.push({ kind: 'command', line });
  }
  return steps;
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
const LUA_ESCAPES: Record<number, string> = { 7: '\\a', 8: '\\b', 9: '\\t', 10: '\\n', 11: '\\v', 12: '\\f', 13: '\\r', 34: '\\"', 92: '\\\\' };

/** A Lua string literal. Buffers are bytes: every byte over 126 is escaped as `\ddd`. */
export function luaQuote(v: string | Buffer): string {
  let out = '"';
  if (Buffer.isBuffer(v)) {
    for (const b of v) out += LUA_ESCAPES[b] ?? (b < 32 || b > 126 ? `\\${b}` : String.fromCharCode(b));
  } else {
    for (const ch of v) {
      const c = ch.codePointAt(0)!;
      out += LUA_ESCAPES[c] ?? (c < 32 || (c >= 127 && c < 160) ? `\\${c}` : ch);
    }
  }
  return `${out}"`;
}

function luaNumber(n: number): string {
  if (Number.isNaN(n)) return '0/0';
  if (n === Infinity) return 'math.huge';
  if (n === -Infinity) return '-math.huge';
  return String(n);
}

/** Keys in a stable order: integers ascending, then strings. */
function sortKeys(keys: string[]): string[] {
  const isInt = (k: string): boolean => /^-?\d+$/.test(k);
  return keys.sort((a, b) => {
    if (isInt(a) && isInt(b)) return Number(a) - Number(b);
    if (isInt(a) !== isInt(b)) return isInt(a) ? -1 : 1;
    return a < b ? -1 : a > b ? 1 : 0;
  });
}

/** A value as Lua source: `"text"`, `{a, b}`, `{k = v}` with sorted keys. */
export function luaRender(v: LuaValue | undefined): string {
  if (v === null || v === undefined) return 'nil';
  if (typeof v === 'boolean') return String(v);
  if (typeof v === 'number') return luaNumber(v);
  if (typeof v === 'string' || Buffer.isBuffer(v)) return luaQuote(v);
  if (Array.isArray(v)) return `{${v.map(luaRender).join(', ')}}`;
  const keys = sortKeys(Object.keys(v));
  if (!keys.length) return '{}';
  const key = (k: string): string => (IDENT.test(k) ? k : /^-?\d+$/.test(k) ? `[${k}]` : `[${luaQuote(k)}]`);
  return `{${keys.map((k) => `${key(k)} = ${luaRender(v[k])}`).join(', ')}}`;
}

/** `Hook(args) -> results` for one traced callback. */
export function renderCall(hook: string, args: LuaValue[], result: CallResult): string {
  const call = `${hook}(${args.map(luaRender).join(', ')})`;
  switch (result.kind) {
    case 'ok':
      return `${call} -> ${result.values.length ? result.values.map(luaRender).join(', ') : 'nothing'}`;
    case 'absent':
      return `${call} -> absent`;
    case 'error':
      return `${call} -> error: ${result.message.split('\n')[0]}`;
    case 'stopped':
      return `${call} -> stopped: ${result.stop}`;
  }
}

/** A committed message: its envelope, then the stored file line by line. */
export function formatQueued(env: Envelope, file: Buffer): string[] {
  const out = [`Q: queued ${env.id} from <${env.sender}>`];
  for (const r of env.recipients) {
    const via = r.route.kind === 'local' ? `local ${r.route.mailbox}` : 'relay';
    out.push(`Q:   to <${r.address}> ${via}${r.original ? ` (for <${r.original}>)` : ''}`);
  }
  const text = file.toString('latin1').replace(/\r\n$/, '');
  for (const line of text.split('\r\n')) out.push(`M: ${Buffer.from(line, 'latin1').toString('utf8')}`);
  return out;
}

/** Log fields that vary between runs or repeat what the transcript already shows. */
const LOG_NOISE = new Set(['level', 'time', 'pid', 'hostname', 'app', 'session', 'msg', 'part']);
/** Warnings the H: lines already show. */
const LOG_SHOWN = new Set(['script error', 'script stopped; switched off for this session']);

/** A pino JSON line as `L: level: message {fields}`; null for what the H: lines show. */
export function formatLogLine(json: string): string | null {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return null;
  }
  const msg = String(entry.msg ?? '');
  if (LOG_SHOWN.has(msg)) return null;
  const level = ({ 40: 'warn', 50: 'error', 60: 'fatal' } as Record<number, string>)[Number(entry.level)] ?? String(entry.level);
  const fields = Object.fromEntries(Object.entries(entry).filter(([k]) => !LOG_NOISE.has(k)));
  return `L: ${level}: ${msg}${Object.keys(fields).length ? ` ${JSON.stringify(fields)}` : ''}`;
}

const RFC5322_DATE = /^\t(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}$/;

/** Replaces what changes between runs: session id, queue ids, the Received date. */
export function normalise(text: string, sessionId: string, queueIds: string[]): string {
  let t = text.split(sessionId).join('<SESSION>');
  for (const [i, id] of queueIds.entries()) t = t.split(id).join(`<QUEUE-${i + 1}>`);
  return t
    .split('\n')
    .map((l) => (l.startsWith('M: ') && RFC5322_DATE.test(l.slice(3)) ? 'M: \t<DATE>' : l))
    .join('\n');
}
