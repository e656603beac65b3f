import { SmtpClientError, type ClientErrorKind } from './client-error.js';
import { applyReplyHook, replyClass, type ClientReply, type ReplyHook } from './client-reply.js';
import type { ClientWire } from './client-wire.js';

/** Reply timeouts in milliseconds; the RFC 5321 §4.5.3.2 minimums where it names one. */
export interface ClientTimeouts {
  /** TCP connect (and the handshake for implicit TLS). */
  connect: number;
  /** Initial 220 (RFC: 5 min). */
  greeting: number;
  /** EHLO/HELO replies. */
  ehlo: number;
  /** STARTTLS reply and the handshake after it. */
  starttls: number;
  /** Each AUTH step. */
  auth: number;
  /** MAIL (RFC: 5 min). */
  mail: number;
  /** Each RCPT (RFC: 5 min). */
  rcpt: number;
  /** DATA initiation, the 354 (RFC: 2 min). */
  dataInit: number;
  /** Each data block: how long the remote may leave our writes unread (RFC: 3 min). */
  dataBlock: number;
  /** DATA termination, the reply to the final "." (RFC: 10 min). */
  dataEnd: number;
  rset: number;
  quit: number;
}

export const DEFAULT_TIMEOUTS: Readonly<ClientTimeouts> = {
  connect: 30_000,
  greeting: 300_000,
  ehlo: 300_000,
  starttls: 300_000,
  auth: 300_000,
  mail: 300_000,
  rcpt: 300_000,
  dataInit: 120_000,
  dataBlock: 180_000,
  dataEnd: 600_000,
  rset: 120_000,
  quit: 60_000,
};

/** A reply as the server sent it and as the client acts on it (after onReply). */
export interface Exchange {
  real: ClientReply;
  reply: ClientReply;
}

/**
 * The command/reply layer shared by the handshake, AUTH and transactions: every reply goes
 * through the onReply hook with the command it answers (R3). After a 421 the server is
 * closing, so every reply still expected in that exchange is taken to be that 421.
 */
export class ClientSession {
  extensions = new Map<string, string>();
  /** A transaction may be open on the server (MAIL accepted, no final reply yet): RSET first. */
  dirty = false;
  /** The 421 that ended the session, if one came. */
  gone: Exchange | null = null;
  /**
   * A transaction whose MAIL, RCPT and DATA went out behind the previous one's data (RFC 2920
   * §3.1), replies unread: the only thing this session may do next is that transaction.
   */
  presented: { tx: object; mail: string; rcpts: string[] } | null = null;

  constructor(
    readonly wire: ClientWire,
    readonly timeouts: ClientTimeouts,
    private readonly hook: ReplyHook | undefined,
  ) {}

  get label(): string {
    return this.wire.label;
  }

  /** Writes command lines in one write (a PIPELINING group when several). */
  write(lines: string[], shown: string): void {
    this.wire.write(this.format(lines), shown);
  }

  /** Command lines as sent, CRLF after each; a line holding CR, LF or NUL is refused. */
  format(lines: string[]): string {
    for (const l of lines) {
      if (/[\r\n\0]/.test(l)) throw new Error(`smtp client ${this.label}: refusing a command with CR, LF or NUL: ${JSON.stringify(l)}`);
    }
    return lines.map((l) => `${l}\r\n`).join('');
  }

  /** Reads the reply to `shown` (the command as onReply sees it) and passes it through the hook. */
  async receive(shown: string, timeoutMs: number): Promise<Exchange> {
    if (this.gone) return this.gone;
    const real = await this.wire.read(timeoutMs, shown);
    let reply: ClientReply;
    try {
      reply = await applyReplyHook(this.hook, shown, real);
    } catch (err) {
      this.wire.kill('hook', `onReply failed: ${(err as Error).message}`, err);
      throw new SmtpClientError('hook', this.label, shown, `onReply failed: ${(err as Error).message}`, real, { cause: err });
    }
    const x = { real, reply };
    if (real.code === 421) this.gone = x;
    return x;
  }

  async command(line: string, timeoutMs: number, shown = line): Promise<Exchange> {
    this.write([line], shown);
    return this.receive(shown, timeoutMs);
  }

  /** Drops the connection and returns an error naming the host and command. */
  fail(kind: ClientErrorKind, command: string | null, detail: string, reply?: ClientReply): SmtpClientError {
    this.wire.kill(kind, detail);
    return new SmtpClientError(kind, this.label, command, detail, reply);
  }

  /** RSET; a refusal leaves the connection in an unknown state, so it is dropped. */
  async reset(): Promise<ClientReply> {
    const x = await this.command('RSET', this.timeouts.rset);
    if (replyClass(x.reply) !== 2 || replyClass(x.real) !== 2) throw this.fail('reply', 'RSET', `RSET refused: ${x.reply.last}`, x.reply);
    this.dirty = false;
    return x.reply;
  }

  /** QUIT, reading the reply for onReply when it comes in time, then close. Never throws. */
  async quit(timeoutMs = this.timeouts.quit): Promise<void> {
    if (this.wire.closed) return;
    try {
      if (!this.gone) await this.command('QUIT', timeoutMs);
    } catch {
      // The session is over either way.
    }
    this.wire.end();
  }
}
