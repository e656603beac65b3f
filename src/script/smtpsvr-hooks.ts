import type { Logger } from 'pino';
import { parseReplyText, type Reply } from '../smtp/reply.js';
import {
  ScriptStopped,
  type ProcessActions,
  type ProcessMessageArgs,
  type RecipientView,
  type SessionFacts,
  type SessionHooks,
  type SessionPolicy,
} from '../smtp/hooks.js';
import type { CallBudget, CallResult, LuaState, LuaValue } from './lua-state.js';
import type { ScriptMetrics } from './metrics.js';
import { vpop3Library, type MessageContext } from './vpop3-lib.js';

/** S6: the number 0 is false, any other number true. */
export function luaBool(v: LuaValue): boolean {
  if (typeof v === 'number') return v !== 0;
  return v !== null && v !== false;
}

const luaNumber = (v: LuaValue, fallback: number): number => (typeof v === 'number' && Number.isFinite(v) ? v : fallback);

/** IN/OUT globals and the policy field each one drives (S24, S25). */
const POLICY_GLOBALS: [string, keyof SessionPolicy][] = [
  ['ValidClientAddress', 'validClient'],
  ['LocalClientAddress', 'localClient'],
  ['AuthenticationRequired', 'authRequired'],
  ['AllowedUsers', 'allowedUsers'],
  ['ForceDisconnect', 'forceDisconnect'],
  ['UseBATV', 'useBATV'],
  ['MaxRecipientsPerLocalMessage', 'maxRecipientsLocal'],
  ['MaxRecipientsPerIncomingMessage', 'maxRecipientsIncoming'],
  ['MaxMessagesPerLocalSession', 'maxMessagesLocal'],
  ['MaxLineLength', 'maxLineLength'],
  ['AddUserAddresses', 'addUserAddresses'],
  ['CheckRBL', 'checkRbl'],
  ['RBLServers', 'rblServers'],
  ['RBLWhitelist', 'rblWhitelist'],
  ['RBLCheckAllServers', 'rblCheckAll'],
  ['RBLFound', 'rblFound'],
  ['RBLAccept', 'rblAccept'],
  ['RBLBlackhole', 'rblBlackhole'],
  ['RBLRedirect', 'rblRedirect'],
  ['RBLRejectMessage', 'rblRejectMessage'],
  ['RBLHeader', 'rblHeader'],
];

const LINE_HOOKS = ['MessageLineRaw', 'MessageLine'];

/**
 * Runs MessageLineRaw and MessageLine over a run of lines in one call: a call into the VM
 * costs more than the usual per-line script, so lines come in batches (one socket read's
 * worth). Each callback is still protected on its own; the batch shares one budget.
 */
const LINES_LUA = `
local pcall, rawget, type, tostring, G = pcall, rawget, type, tostring, _G
function __moonpost_lines(raws, lines)
  local out, errs = {}, {}
  local raw, ml = rawget(G, 'MessageLineRaw'), rawget(G, 'MessageLine')
  for i = 1, #lines do
    if type(raw) == 'function' then
      local ok, e = pcall(raw, raws[i])
      if not ok then errs[#errs + 1] = 'MessageLineRaw: ' .. tostring(e) end
    end
    local r = true
    if type(ml) == 'function' then
      local ok, v = pcall(ml, lines[i])
      if not ok then errs[#errs + 1] = 'MessageLine: ' .. tostring(v) elseif v ~= nil then r = v end
    end
    out[i] = r
  end
  return out, errs
end
`;
const ANALYSIS_HOOKS = ['CheckRecipients', 'ProcessMessage', 'MonitorBcc', 'LogRecipients', 'LogRecipientsBlocked'];

const strings = (v: LuaValue | undefined): string[] =>
  Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : typeof v === 'string' && v ? [v] : [];

/**
 * SMTPSVR.LUA driving one session: sets the globals before each callback, reads the IN/OUT
 * ones back into the session's policy afterwards, and turns the script's return values into
 * replies (S5). A runtime error is logged and ignored; a budget stop switches the script off
 * for the session and throws ScriptStopped so the session answers 451 (S4).
 */
export class ScriptHooks implements SessionHooks {
  private off = false;
  readonly wantsLines: boolean;
  readonly wantsAnalysis: boolean;
  private readonly batchLines: boolean;
  private readonly defined: Set<string>;
  /** Last values of the IN/OUT globals pushed (or read back unchanged), so only changes cost a push. */
  private readonly pushed = new Map<string, LuaValue>();
  /** Hook calls made so far, in order: the script test bench prints them. */
  trace: ((entry: { hook: string; args: LuaValue[]; result: CallResult; ms: number }) => void) | null = null;

  constructor(
    private readonly state: LuaState,
    private readonly policy: SessionPolicy,
    private readonly facts: () => SessionFacts,
    private readonly budget: CallBudget,
    private readonly log: Logger,
    private readonly metrics: ScriptMetrics,
  ) {
    this.defined = new Set(
      [
        'Start', 'RBLResults', 'GetMaxMessageSize', 'GetEHLOCapabilities', 'DoHELO', 'DoHELP', 'DoQUIT', 'DoNOOP', 'DoRSET',
        'DoVRFY', 'DoEXPN', 'DoMAILFROM', 'DoRCPTTO', 'DoDATAStart', 'DoUnrecognised', 'StartMessage', 'MessageLineRaw',
        'MessageLine', 'EndMessage', 'CheckRecipients', 'ProcessMessage', 'MonitorBcc', 'LogRecipients', 'LogRecipientsBlocked', 'End',
      ].filter((n) => state.hasFunction(n)),
    );
    this.wantsLines = LINE_HOOKS.some((h) => this.defined.has(h));
    this.wantsAnalysis = ANALYSIS_HOOKS.some((h) => this.defined.has(h));
    this.batchLines = this.wantsLines && state.runInternal(LINES_LUA, '=lines').kind === 'ok';
  }

  has(hook: string): boolean {
    return !this.off && this.defined.has(hook);
  }

  private setGlobals(): void {
    const f = this.facts();
    const p = this.policy;
    // IN globals are pushed before every callback, so a script's own write to one never
    // outlives the callback that made it (S7).
    const facts: [string, LuaValue][] = [
      ['IPAddress', f.ip],
      ['AuthenticatedUser', f.authUser],
      ['SMTPAuthenticatedUser', f.authUser],
      ['ServerID', f.serviceId],
      ['ServerName', f.serviceName],
      ['Encryption', f.tls !== ''],
      ['EncryptionDetails', f.tls],
      ['HeloName', f.helo],
      ['MailFrom', f.mailFrom],
      ['SessionID', f.sessionId],
      ['RBLResultInfo', f.rblResultInfo],
    ];
    for (const [name, v] of facts) this.state.setGlobal(name, v);
    // IN/OUT globals only when they differ from what the script holds (see readBack).
    for (const [g, k] of POLICY_GLOBALS) {
      const v = p[k];
      if (this.pushed.get(g) === v && this.pushed.has(g)) continue;
      this.state.setGlobal(g, v);
      this.pushed.set(g, v);
    }
  }

  private readBack(): void {
    const p = this.policy as unknown as Record<string, LuaValue>;
    for (const [g, k] of POLICY_GLOBALS) {
      const v = this.state.getGlobal(g);
      const old = p[k];
      let next: LuaValue;
      if (Array.isArray(old)) {
        // A list global (RBLServers): an empty Lua table reads back as {}, not [].
        const list = Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : v && typeof v === 'object' && !Buffer.isBuffer(v) && !Object.keys(v).length ? [] : old;
        if (list.length !== old.length || list.some((x, i) => x !== old[i])) p[k] = list;
        this.pushed.set(g, p[k]);
        continue;
      }
      if (typeof old === 'boolean') next = luaBool(v);
      else if (typeof old === 'number') next = Math.max(0, Math.floor(luaNumber(v, old as number)));
      else next = typeof v === 'string' ? v : old;
      if (next !== old) p[k] = next;
      // What the script holds is the policy value only when it wrote it in that form (1 is
      // true, -5 is 0, a string in a number is ignored); otherwise push the value next time.
      if (v === next) this.pushed.set(g, next);
      else this.pushed.delete(g);
    }
  }

  /**
   * Runs one callback; null when it is absent, failed, or the script is off. The per-line
   * callbacks (`perLine`) skip the globals round trip: nothing a global reflects can change
   * between two lines of one message, and what a line callback writes to an IN/OUT global is
   * read back after the next whole callback (EndMessage at the latest). That round trip, not
   * the Lua code, is most of a callback's cost.
   */
  private call(hook: string, args: LuaValue[], bytes = false, perLine = false): LuaValue[] | null {
    if (!this.has(hook)) return null;
    if (!perLine) this.setGlobals();
    const t0 = performance.now();
    const r = this.state.call(hook, args, this.budget, bytes);
    const ms = performance.now() - t0;
    this.metrics.record(hook, r.kind, ms, 'message' in r ? r.message : undefined);
    this.trace?.({ hook, args, result: r, ms });
    if (r.kind === 'ok') {
      if (!perLine) this.readBack();
      return r.values;
    }
    if (r.kind === 'absent') return null;
    // A failed callback counts as absent: whatever it wrote to the globals is overwritten.
    this.pushed.clear();
    if (r.kind === 'stopped') {
      this.off = true;
      this.log.warn({ hook, stop: r.stop, err: r.message }, 'script stopped; switched off for this session');
      throw new ScriptStopped(hook, r.message);
    }
    this.log.warn({ hook, err: r.message }, 'script error');
    return null;
  }

  /** S5: "" or nil is the default; a string without a valid code is logged and ignored. */
  private toReply(hook: string, v: LuaValue | undefined): Reply | null {
    if (v === null || v === undefined || v === '') return null;
    const text = typeof v === 'number' ? String(v) : typeof v === 'string' ? v : null;
    const r = text === null ? null : parseReplyText(text);
    if (!r) this.log.warn({ hook, value: String(v).slice(0, 200) }, 'script returned a reply without a valid SMTP code; using the default');
    return r;
  }

  private params(v: LuaValue | undefined, fallback: Record<string, string>): Record<string, string> {
    if (!v || typeof v !== 'object' || Array.isArray(v) || Buffer.isBuffer(v)) return fallback;
    const out: Record<string, string> = {};
    for (const [k, val] of Object.entries(v)) {
      if (typeof val === 'string' || typeof val === 'number') out[k.toUpperCase()] = String(val);
      else if (val === true) out[k.toUpperCase()] = '';
    }
    return out;
  }

  start(): Reply | null {
    const r = this.call('Start', []);
    return r ? this.toReply('Start', r[0]) : null;
  }

  rblResults(): Reply | null {
    const r = this.call('RBLResults', []);
    return r ? this.toReply('RBLResults', r[0]) : null;
  }

  maxMessageSize(host: string, current: number): number {
    const r = this.call('GetMaxMessageSize', [host, current]);
    const v = r?.[0];
    return typeof v === 'number' && v >= 0 ? Math.floor(v) : current;
  }

  ehloCapabilities(host: string, caps: string[]): string[] {
    const r = this.call('GetEHLOCapabilities', [host, caps.join('\r\n')]);
    const v = r?.[0];
    if (typeof v !== 'string') return caps;
    return v
      .split(/\r?\n/)
      .map((l) => l.replace(/^250[ -]/, '').trim())
      .filter(Boolean);
  }

  helo(host: string, refuse: boolean, ehlo: boolean): { refuse: boolean; reply: Reply | null } {
    const r = this.call('DoHELO', [host, refuse, ehlo]);
    if (!r) return { refuse, reply: null };
    return { refuse: r.length ? luaBool(r[0]) : refuse, reply: this.toReply('DoHELO', r[1]) };
  }

  help(lines: string[]): string[] {
    const r = this.call('DoHELP', [lines.join('\r\n')]);
    const v = r?.[0];
    if (typeof v !== 'string' || v === '') return lines;
    return v.split(/\r?\n/).filter((l, i, a) => l !== '' || i < a.length - 1);
  }

  simple(command: 'QUIT' | 'NOOP' | 'RSET'): Reply | null {
    const hook = `Do${command}`;
    const r = this.call(hook, []);
    return r ? this.toReply(hook, r[0]) : null;
  }

  verify(command: 'VRFY' | 'EXPN', recipients: string[], current: Reply): Reply {
    const hook = `Do${command}`;
    const currentText = current.lines.map((l, i) => `${current.code}${i === current.lines.length - 1 ? ' ' : '-'}${current.enhanced ? `${current.enhanced} ` : ''}${l}`).join('\r\n');
    const r = this.call(hook, [recipients, currentText]);
    return (r && this.toReply(hook, r[0])) ?? current;
  }

  mailFrom(data: string, address: string, params: Record<string, string>, spf: string, authSender: string) {
    const r = this.call('DoMAILFROM', [data, address, params, spf, authSender]);
    if (!r) return { params, reply: null };
    return { params: this.params(r[0], params), reply: this.toReply('DoMAILFROM', r[1]) };
  }

  rcptTo(data: string, address: string, params: Record<string, string>, recipients: string[]) {
    const r = this.call('DoRCPTTO', [data, address, params, recipients]);
    if (!r) return { params, reply: null };
    return { params: this.params(r[0], params), reply: this.toReply('DoRCPTTO', r[1]) };
  }

  dataStart(recipients: string[]): { reply: Reply | null; headers: string[] } {
    const r = this.call('DoDATAStart', [recipients]);
    if (!r) return { reply: null, headers: [] };
    const h = r[1];
    let headers: string[] = [];
    if (typeof h === 'string') headers = h.split(/\r?\n/);
    else if (Array.isArray(h)) headers = h.filter((x): x is string => typeof x === 'string').flatMap((x) => x.split(/\r?\n/));
    // A header line may not be empty (it would end the header) or carry control characters.
    headers = headers.map((x) => x.replace(/[\x00-\x08\x0a-\x1f\x7f]/g, '')).filter((x) => x.trim() !== '');
    return { reply: this.toReply('DoDATAStart', r[0]), headers };
  }

  unrecognised(line: string): Reply | null {
    const r = this.call('DoUnrecognised', [line]);
    return r ? this.toReply('DoUnrecognised', r[0]) : null;
  }

  startMessage(): void {
    this.call('StartMessage', []);
  }

  messageLineRaw(line: Buffer): void {
    this.call('MessageLineRaw', [line], false, true);
  }

  messageLine(line: Buffer): Buffer | false | null {
    const r = this.call('MessageLine', [line], true, true);
    if (!r || r.length === 0 || r[0] === null) return null;
    const v = r[0];
    if (v === false) return false;
    if (Buffer.isBuffer(v)) return v;
    if (typeof v === 'number') return Buffer.from(String(v));
    return null;
  }

  messageLines(raws: Buffer[], lines: Buffer[]): (Buffer | false | null)[] {
    // The test bench traces every call, so it gets them one by one.
    if (this.trace || !this.batchLines) {
      return lines.map((line, i) => {
        this.messageLineRaw(raws[i]);
        return this.messageLine(line);
      });
    }
    if (this.off) return lines.map(() => null);
    const t0 = performance.now();
    const r = this.state.call('__moonpost_lines', [raws, lines], this.budget, true);
    const each = (performance.now() - t0) / lines.length;
    for (const hook of LINE_HOOKS) {
      if (this.defined.has(hook)) for (let i = 0; i < lines.length; i++) this.metrics.record(hook, r.kind, each);
    }
    if (r.kind === 'stopped') {
      this.off = true;
      this.pushed.clear();
      this.log.warn({ hook: 'MessageLine', stop: r.stop, err: r.message }, 'script stopped; switched off for this session');
      throw new ScriptStopped('MessageLine', r.message);
    }
    if (r.kind !== 'ok') {
      if (r.kind === 'error') this.log.warn({ hook: 'MessageLine', err: r.message }, 'script error');
      return lines.map(() => null);
    }
    const [out, errs] = r.values;
    if (Array.isArray(errs)) for (const e of errs.slice(0, 10)) this.log.warn({ hook: 'MessageLine', err: String(e) }, 'script error');
    const results = Array.isArray(out) ? out : [];
    return lines.map((_, i) => {
      const v = results[i];
      if (v === false) return false;
      if (Buffer.isBuffer(v)) return v;
      if (typeof v === 'number') return Buffer.from(String(v));
      return null;
    });
  }

  endMessage(): Reply | null {
    const r = this.call('EndMessage', []);
    return r ? this.toReply('EndMessage', r[0]) : null;
  }

  checkRecipients(a: RecipientView & { ip: string; locallySent: boolean; size: number }): Reply | null {
    const r = this.call('CheckRecipients', [a.recipients, a.to, a.cc, a.bcc, a.ip, a.authSender, a.sender, a.subject, a.locallySent, a.size]);
    return r ? this.toReply('CheckRecipients', r[0]) : null;
  }

  processMessage(a: ProcessMessageArgs): ProcessActions | null {
    const actions = { SendToOriginalRecipients: true, Delete: false, Ignore: false, Reason: '', Recipients: [], HeaderModifiers: [] };
    const r = this.call('ProcessMessage', [a.mailFrom, a.subject, a.recipients, actions, a.structure, a.size, a.attachments]);
    const v = r?.[0];
    if (!v || typeof v !== 'object' || Array.isArray(v) || Buffer.isBuffer(v)) return null;
    const t = v as Record<string, LuaValue>;
    return {
      sendToOriginalRecipients: t.SendToOriginalRecipients === undefined ? true : luaBool(t.SendToOriginalRecipients),
      delete: luaBool(t.Delete ?? false),
      ignore: luaBool(t.Ignore ?? false),
      reason: typeof t.Reason === 'string' ? t.Reason : '',
      // Addresses as RCPT TO gives them, with or without <>; empty entries mean nothing.
      recipients: strings(t.Recipients)
        .map((x) => x.trim().replace(/^<(.*)>$/, '$1'))
        .filter(Boolean),
      headerModifiers: strings(t.HeaderModifiers),
    };
  }

  monitorBcc(recipients: string[], bcc: string[], sender: string, authSender: string, subject: string, monitor: string): string | null {
    const r = this.call('MonitorBcc', [recipients, bcc, sender, authSender, subject, monitor]);
    if (!r) return null;
    return typeof r[0] === 'string' ? r[0] : '';
  }

  logRecipients(a: RecipientView): void {
    this.call('LogRecipients', [a.recipients, a.to, a.cc, a.bcc, a.sender, a.authSender, a.subject]);
  }

  logRecipientsBlocked(blocked: string[], reason: string, sender: string, authSender: string, subject: string): void {
    this.call('LogRecipientsBlocked', [blocked, reason, sender, authSender, subject]);
  }

  /**
   * The message the VPOP3.GetMessage* helpers read: set it just before ProcessMessage and
   * clear it (null) right after, so the helpers raise a Lua error in every other callback.
   */
  setMessageContext(ctx: MessageContext | null): void {
    vpop3Library(this.state)?.setMessage(ctx);
  }

  /** End() once, then the state is released. */
  end(): void {
    try {
      this.call('End', []);
    } catch {
      /* a runaway End has nothing left to answer */
    } finally {
      this.state.close();
    }
  }
}
