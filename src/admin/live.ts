import type { SessionObserver } from '../smtp/context.js';
import type { Reply } from '../smtp/reply.js';
import type { ScriptHooks } from '../script/smtpsvr-hooks.js';
import type { HookFailure } from '../script/metrics.js';
import { renderCall } from '../script/try-format.js';
import type { EventBus } from './events.js';

/** A connection open now, as the console lists it. */
export interface OpenConnection {
  session: string;
  ip: string;
  port: number;
  service: string;
  since: string;
  helo?: string;
  /** The last command (summarised) and the reply it got. */
  lastCommand?: string;
  lastReply?: string;
  messages: number;
}

const MAX_CALL = 400;
/** Commands whose argument is shown; others show the verb only (AUTH's data never). */
const SHOW_ARGS = new Set(['EHLO', 'HELO', 'MAIL', 'RCPT', 'BDAT', 'VRFY', 'EXPN']);
const VERBS = new Set([...SHOW_ARGS, 'DATA', 'RSET', 'NOOP', 'QUIT', 'HELP', 'STARTTLS', 'AUTH']);

/** `250 2.1.0 Ok` (first line; `(+n lines)` for the rest). */
export function replySummary(r: Reply): string {
  const first = `${r.code}${r.enhanced ? ` ${r.enhanced}` : ''} ${r.lines[0] ?? ''}`.trimEnd();
  return r.lines.length > 1 ? `${first} (+${r.lines.length - 1} lines)` : first;
}

/** `Lua's message` → the script file and line it names, if any (`SMTPSVR.LUA:12:` or in the traceback). */
export function scriptPosition(message: string): { script: string | null; line: number | null } {
  const m = /([A-Za-z0-9_.-]+\.lua):(\d+):/i.exec(message);
  return m ? { script: m[1], line: Number(m[2]) } : { script: null, line: null };
}

interface SessionTrack extends OpenConnection {
  started: number;
  /** The next line answers an AUTH challenge (334): never shown. */
  saslNext: boolean;
  pending: string;
}

/**
 * Feeds the event bus from the SMTP side: a SessionObserver for the listeners and sessions, a
 * trace on each session's script hooks, and the script host's failures. Keeps the table of
 * open connections.
 */
export class LiveFeed implements SessionObserver {
  private readonly open = new Map<string, SessionTrack>();

  constructor(private readonly bus: EventBus) {}

  connections(): OpenConnection[] {
    return [...this.open.values()].map((t) => ({
      session: t.session,
      ip: t.ip,
      port: t.port,
      service: t.service,
      since: t.since,
      helo: t.helo,
      lastCommand: t.lastCommand,
      lastReply: t.lastReply,
      messages: t.messages,
    }));
  }

  opened(session: string, client: { ip: string; port: number; service: string }): void {
    const now = Date.now();
    this.open.set(session, { session, ...client, since: new Date(now).toISOString(), started: now, messages: 0, saslNext: false, pending: '(connect)' });
    this.bus.publish({ type: 'connect', session, ...client });
  }

  closed(session: string): void {
    const t = this.open.get(session);
    this.open.delete(session);
    this.bus.publish({ type: 'disconnect', session, ip: t?.ip ?? '', ms: t ? Date.now() - t.started : 0 });
  }

  command(session: string, line: string): void {
    const t = this.open.get(session);
    if (!t) return;
    if (t.saslNext) {
      t.pending = '(AUTH data)';
      return;
    }
    const sp = line.indexOf(' ');
    const verb = (sp < 0 ? line : line.slice(0, sp)).toUpperCase();
    let shown: string;
    if (SHOW_ARGS.has(verb)) shown = line.slice(0, 300);
    else if (verb === 'AUTH') shown = `AUTH ${line.slice(5).trim().split(' ')[0] ?? ''}`.trimEnd();
    else shown = VERBS.has(verb) ? verb : '(other)';
    if ((verb === 'EHLO' || verb === 'HELO') && sp > 0) t.helo = line.slice(sp + 1).trim().slice(0, 255);
    t.pending = shown;
  }

  reply(session: string, r: Reply): void {
    const t = this.open.get(session);
    if (!t) return;
    // The reply after DATA's 354 comes when the message ends.
    const command = t.pending === 'DATA' && t.lastReply?.startsWith('354') ? '(end of data)' : t.pending;
    t.saslNext = r.code === 334;
    t.lastCommand = command;
    t.lastReply = replySummary(r);
    this.bus.publish({ type: 'command', session, command, reply: t.lastReply });
  }

  message(session: string, m: { queueId: string; outcome: string; from: string; to: string[]; size: number; reply: Reply }): void {
    const t = this.open.get(session);
    if (t && m.outcome === 'queued') t.messages++;
    this.bus.publish({ type: 'message', session, queueId: m.queueId, outcome: m.outcome, from: m.from, to: m.to.slice(0, 100), size: m.size, reply: replySummary(m.reply) });
  }

  /** Chains a trace onto one session's script hooks: every callback becomes a `hook` event. */
  traceHooks(hooks: ScriptHooks, session: string): void {
    const previous = hooks.trace;
    hooks.trace = (entry) => {
      previous?.(entry);
      const r = entry.result;
      if (r.kind === 'absent') return;
      const call = this.bus.watched ? renderCall(entry.hook, entry.args, r) : undefined;
      this.bus.publish({
        type: 'hook',
        session,
        hook: entry.hook,
        outcome: r.kind,
        ms: Math.round(entry.ms * 1000) / 1000,
        call: call && call.length > MAX_CALL ? `${call.slice(0, MAX_CALL)}...` : call,
        error: r.kind === 'ok' ? undefined : r.message.split('\n')[0],
      });
    };
  }

  /** A failed callback of any script (SMTPSVR.LUA, relayout.lua, a main chunk). */
  scriptFailure(f: HookFailure): void {
    this.bus.publish({ type: 'script-error', ...scriptPosition(f.message), hook: f.hook, kind: f.kind, message: f.message.slice(0, 2000) });
  }
}
