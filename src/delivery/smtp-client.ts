import { authenticate, type ClientAuth } from './client-auth.js';
import { SmtpClientError } from './client-error.js';
import { parseExtensions } from './client-params.js';
import { replyClass, type ClientReply, type ReplyHook } from './client-reply.js';
import { ClientSession, DEFAULT_TIMEOUTS, type ClientTimeouts, type Exchange } from './client-session.js';
import { runTransaction, type SendResult, type Transaction } from './client-transaction.js';
import { ClientWire, type WireTlsInfo } from './client-wire.js';

export { SmtpClientError, type ClientErrorKind } from './client-error.js';
export type { ClientAuth } from './client-auth.js';
export type { ClientReply, ReplyHook } from './client-reply.js';
export { DEFAULT_TIMEOUTS, type ClientTimeouts } from './client-session.js';
export type { Outcome, RecipientResult, SendResult, Stage, Transaction } from './client-transaction.js';
export type { TxRecipient } from './client-params.js';
export type { BodySource } from './dot-stream.js';

/**
 * - `none`: plain SMTP
 * - `starttls`: STARTTLS is mandatory; a server that does not offer it is an `extension` error
 * - `opportunistic`: STARTTLS when offered (a failed handshake is still a `tls` error)
 * - `implicit`: TLS from the first byte (RFC 8314)
 */
export type ClientTlsMode = 'none' | 'starttls' | 'opportunistic' | 'implicit';

export interface ClientOptions {
  host: string;
  port: number;
  tls: ClientTlsMode;
  /** Check the server's certificate (chain and name). */
  rejectUnauthorized: boolean;
  /** TLS server name (SNI and the name checked); default the host when it is a name. */
  servername?: string;
  /** CA certificates (PEM) to trust instead of the system's. */
  ca?: string | Buffer | (string | Buffer)[];
  /** Our name for EHLO/HELO. */
  helo: string;
  auth?: ClientAuth;
  timeouts?: Partial<ClientTimeouts>;
  /** ReturnCodeHandler (R3): every reply, the greeting included, passes through it. */
  onReply?: ReplyHook;
  localAddress?: string;
}

/**
 * Cap on waiting for QUIT's reply when a session is abandoned (failed handshake): the reply
 * still reaches onReply when it comes quickly, and a silent server does not hold us.
 */
const ABANDON_QUIT_MS = 5000;

/**
 * Our SMTP client (RFC 5321), built so that every reply can pass relayout.lua's
 * ReturnCodeHandler (R3) before the client acts on it. `connect` does the greeting, EHLO (HELO
 * when EHLO gets a 5xx), STARTTLS with a fresh EHLO, and AUTH; `send` runs one transaction. One
 * operation at a time per client; use several clients (see ClientPool) for parallelism.
 */
export class SmtpClient {
  private busy = false;

  private constructor(
    private readonly session: ClientSession,
    private readonly opts: ClientOptions,
    /** The greeting as acted on (after onReply). */
    readonly greeting: ClientReply,
    /** The first word of the server's greeting text ("" when it had none). */
    readonly greetingName: string,
    /** EHLO worked (false after the HELO fallback: no extensions). */
    readonly esmtp: boolean,
    /** The user AUTH succeeded for, if any. */
    readonly authenticatedAs: string | undefined,
  ) {}

  static async connect(opts: ClientOptions): Promise<SmtpClient> {
    const t: ClientTimeouts = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
    const tls = { rejectUnauthorized: opts.rejectUnauthorized, servername: opts.servername, ca: opts.ca };
    const wire = await ClientWire.open({
      host: opts.host,
      port: opts.port,
      implicitTls: opts.tls === 'implicit',
      tls,
      localAddress: opts.localAddress,
      connectTimeoutMs: t.connect,
    });
    const s = new ClientSession(wire, t, opts.onReply);
    try {
      const g = await s.receive('', t.greeting);
      const name = /^\d{3}[ -](\S+)/.exec(g.real.lines[0])?.[1] ?? '';
      if (name && name !== opts.host) wire.label = `${opts.host}:${opts.port} (${name})`;
      if (g.reply.code !== 220) throw refused(s, 'reply', '', 'greeting refused', g);
      let esmtp = await hello(s, opts.helo);
      const offered = s.extensions.has('STARTTLS');
      if (opts.tls === 'starttls' && !offered) throw new SmtpClientError('extension', s.label, `EHLO ${opts.helo}`, 'STARTTLS is required but not offered');
      if ((opts.tls === 'starttls' || opts.tls === 'opportunistic') && offered) {
        const x = await s.command('STARTTLS', t.starttls);
        // Only the server's own 220 may start the handshake.
        if (x.reply.code !== 220 || x.real.code !== 220) throw refused(s, 'reply', 'STARTTLS', 'STARTTLS refused', x);
        await wire.upgrade(opts.host, tls, t.starttls, 'STARTTLS');
        s.extensions = new Map();
        esmtp = await hello(s, opts.helo);
      }
      if (opts.auth) await authenticate(s, opts.auth);
      return new SmtpClient(s, opts, g.reply, name, esmtp, opts.auth?.user);
    } catch (err) {
      await s.quit(Math.min(ABANDON_QUIT_MS, t.quit));
      wire.destroy();
      throw err;
    }
  }

  /** EHLO keywords (upper case) → parameters, from the last EHLO reply as acted on. */
  get extensions(): ReadonlyMap<string, string> {
    return this.session.extensions;
  }

  /** The server's name from its greeting, else the host connected to. */
  get remote(): string {
    return this.greetingName || this.opts.host;
  }

  /** `host:port`, with the greeting's name when it differs; as in error messages. */
  get label(): string {
    return this.session.label;
  }

  get tls(): WireTlsInfo | undefined {
    return this.session.wire.tls;
  }

  /** The connection is gone (closed by either side, or dropped after an error or timeout). */
  get closed(): boolean {
    return this.session.wire.closed;
  }

  onClose(cb: () => void): void {
    this.session.wire.onClosed(cb);
  }

  /**
   * One transaction: a result per recipient (a refusal by MAIL applies to all, one by DATA or
   * the final "." to all accepted). Refusals decided locally (extension missing, size over the
   * server's SIZE) come back with stage `local` and nothing sent. Network errors, timeouts
   * and protocol errors reject with an SmtpClientError and leave the client closed.
   * With `next`, and PIPELINING, that transaction's MAIL, RCPT and DATA go out right behind
   * this one's data (RFC 2920 §3.1); it must be the next `send` on this client.
   */
  async send(tx: Transaction, next?: Transaction): Promise<SendResult> {
    if (!tx.recipients.length) throw new Error(`smtp client ${this.label}: a transaction needs at least one recipient`);
    return this.exclusive('send', () => runTransaction(this.session, tx, next));
  }

  /**
   * A transaction went out ahead (the `next` of the last `send`, with PIPELINING): the next
   * call must be `send` of that very transaction; `quit` or `close` drop the connection, and the
   * server, which never got its data, delivers nothing.
   */
  get pipelinedAhead(): boolean {
    return this.session.presented !== null;
  }

  /** RSET (also a liveness check before reusing a connection); rejects and closes when refused. */
  async rset(): Promise<ClientReply> {
    return this.exclusive('rset', () => {
      if (this.session.presented) throw this.session.fail('protocol', 'RSET', 'a pipelined transaction is waiting for its replies');
      return this.session.reset();
    });
  }

  /** QUIT and close; never rejects. */
  async quit(): Promise<void> {
    // A transaction pipelined ahead holds the server in its DATA: only dropping the connection ends it.
    if (this.busy || this.session.presented) {
      this.close();
      return;
    }
    await this.session.quit();
  }

  /** Drops the connection at once. */
  close(): void {
    this.session.wire.destroy();
  }

  private async exclusive<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.busy) throw new Error(`smtp client ${this.label}: ${what}() while another operation is running`);
    if (this.closed) throw new SmtpClientError('network', this.label, null, `${what}() on a closed connection`);
    this.busy = true;
    try {
      return await fn();
    } finally {
      this.busy = false;
    }
  }
}

/** EHLO, or HELO when EHLO gets a 5xx (RFC 5321 §4.1.4, §3.2); true for ESMTP. */
async function hello(s: ClientSession, name: string): Promise<boolean> {
  const e = await s.command(`EHLO ${name}`, s.timeouts.ehlo);
  if (replyClass(e.reply) === 2) {
    s.extensions = parseExtensions(e.reply);
    return true;
  }
  if (replyClass(e.reply) !== 5 || s.gone) throw refused(s, 'reply', `EHLO ${name}`, 'EHLO refused', e);
  const h = await s.command(`HELO ${name}`, s.timeouts.ehlo);
  if (replyClass(h.reply) !== 2) throw refused(s, 'reply', `HELO ${name}`, 'HELO refused', h);
  s.extensions = new Map();
  return false;
}

function refused(s: ClientSession, kind: 'reply', command: string, what: string, x: Exchange): SmtpClientError {
  return new SmtpClientError(kind, s.label, command, `${what}: ${x.reply.last}`, x.reply);
}
