import { decodeXtext, parseParams, parsePath } from './address.js';
import { reply, type Reply } from './reply.js';

export interface MailCommand {
  /** Raw text after `MAIL FROM:` (the DoMAILFROM `data` argument). */
  data: string;
  /** Bare return path, "" for `<>`. */
  address: string;
  params: Record<string, string>;
  size?: number;
  body?: '7BIT' | '8BITMIME';
  smtputf8: boolean;
  ret?: 'FULL' | 'HDRS';
  envid?: string;
}

export interface RcptCommand {
  data: string;
  address: string;
  params: Record<string, string>;
  notify?: string[];
  orcpt?: string;
}

const FROM_PREFIX = /^FROM:/i;
const TO_PREFIX = /^TO:/i;

const syntax = (what: string, detail: string): { error: Reply } => ({ error: reply(501, '5.5.4', `Syntax: ${what}: ${detail}`) });
const badParam = (detail: string): { error: Reply } => ({ error: reply(555, '5.5.4', detail) });

/**
 * Parses the argument of MAIL (`FROM:<path> params`) or RCPT (`TO:<path> params`) and checks
 * every ESMTP parameter moonpost offers: SIZE, BODY, SMTPUTF8, AUTH, RET, ENVID (MAIL) and
 * NOTIFY, ORCPT (RCPT). Unknown parameters are refused with 555 (RFC 5321 §4.1.1.11).
 */
export function parseEsmtpLine(
  arg: string,
  kind: 'FROM' | 'TO',
  opts: { smtputf8: boolean; dsn: boolean },
): MailCommand | RcptCommand | { error: Reply } {
  const what = kind === 'FROM' ? 'MAIL FROM:<address>' : 'RCPT TO:<address>';
  const m = (kind === 'FROM' ? FROM_PREFIX : TO_PREFIX).exec(arg);
  if (!m) return syntax(what, 'missing ' + kind + ':');
  const data = arg.slice(m[0].length).trim();
  if (kind === 'TO' && /^<postmaster>$/i.test(data.split(' ')[0])) {
    const params = parseParams(data.slice(data.indexOf('>') + 1));
    if (typeof params === 'string') return syntax(what, params);
    return rcptParams(data, 'postmaster', params, opts.dsn);
  }
  // Parsed as UTF-8 so that a non-ASCII address without SMTPUTF8 gets 553 5.6.7, not 501.
  const path = parsePath(data, { allowNull: kind === 'FROM', utf8: true });
  if (!path.ok) return syntax(what, path.error);
  const params = parseParams(path.rest);
  if (typeof params === 'string') return syntax(what, params);
  // SMTPUTF8 on MAIL (when offered) is what lets the addresses hold UTF-8.
  const utf8 = kind === 'FROM' ? 'SMTPUTF8' in params && opts.smtputf8 : opts.smtputf8;
  if (path.mailbox && /[^\x00-\x7f]/.test(path.mailbox.address) && !utf8) {
    return { error: reply(553, '5.6.7', 'Non-ASCII address needs SMTPUTF8') };
  }
  const address = path.mailbox?.address ?? '';
  return kind === 'FROM' ? mailParams(data, address, params, utf8, opts.dsn) : rcptParams(data, address, params, opts.dsn);
}

function mailParams(data: string, address: string, params: Record<string, string>, utf8: boolean, dsn: boolean): MailCommand | { error: Reply } {
  const cmd: MailCommand = { data, address, params, smtputf8: false };
  for (const [key, value] of Object.entries(params)) {
    switch (key) {
      case 'SIZE':
        if (!/^\d{1,20}$/.test(value)) return syntax('MAIL FROM', 'bad SIZE value');
        cmd.size = Number(value);
        break;
      case 'BODY': {
        const v = value.toUpperCase();
        if (v !== '7BIT' && v !== '8BITMIME') return badParam(`Unsupported BODY type ${value}`);
        cmd.body = v;
        break;
      }
      case 'SMTPUTF8':
        if (value !== '' || !utf8) return badParam('SMTPUTF8 takes no value');
        cmd.smtputf8 = true;
        break;
      case 'AUTH':
        // RFC 4954 §5: kept for trace only; an unauthenticated client's value is not trusted.
        if (decodeXtext(value) === null) return syntax('MAIL FROM', 'bad AUTH value');
        break;
      case 'RET':
        if (!dsn) return badParam('DSN not offered');
        if (!/^(FULL|HDRS)$/i.test(value)) return syntax('MAIL FROM', 'RET must be FULL or HDRS');
        cmd.ret = value.toUpperCase() as 'FULL' | 'HDRS';
        break;
      case 'ENVID': {
        if (!dsn) return badParam('DSN not offered');
        const envid = decodeXtext(value);
        if (envid === null || envid.length > 100) return syntax('MAIL FROM', 'bad ENVID value');
        cmd.envid = envid;
        break;
      }
      default:
        return badParam(`Unsupported parameter ${key}`);
    }
  }
  return cmd;
}

function rcptParams(data: string, address: string, params: Record<string, string>, dsn: boolean): RcptCommand | { error: Reply } {
  const cmd: RcptCommand = { data, address, params };
  for (const [key, value] of Object.entries(params)) {
    switch (key) {
      case 'NOTIFY': {
        if (!dsn) return badParam('DSN not offered');
        const list = value.toUpperCase().split(',');
        const ok = list.every((v) => ['NEVER', 'SUCCESS', 'FAILURE', 'DELAY'].includes(v));
        if (!ok || (list.includes('NEVER') && list.length > 1)) return syntax('RCPT TO', 'bad NOTIFY value');
        cmd.notify = list;
        break;
      }
      case 'ORCPT': {
        if (!dsn) return badParam('DSN not offered');
        const decoded = decodeXtext(value);
        if (decoded === null || !/^[A-Za-z0-9-]+;.+/.test(decoded)) return syntax('RCPT TO', 'bad ORCPT value');
        cmd.orcpt = decoded;
        break;
      }
      default:
        return badParam(`Unsupported parameter ${key}`);
    }
  }
  return cmd;
}
