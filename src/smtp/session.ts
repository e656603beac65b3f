import type { Logger } from 'pino';
import type { ClientInfo, ServiceContext, SessionIO } from './context.js';
import { parseReplyText, reply, type Reply } from './reply.js';
import { SaslExchange, SASL_MECHANISMS, type SaslStep } from './sasl.js';
import { verifyPassword } from '../policy/password.js';
import { parseEsmtpLine, type MailCommand, type RcptCommand } from './envelope-args.js';
import { Transaction } from './transaction.js';
import { DataReader } from './data-reader.js';
import { receivedHeader } from './received.js';
import type { Envelope } from '../queue/envelope.js';
import { safeFolderName, type Target } from '../policy/directory.js';
import { ScriptStopped, type SessionFacts, type SessionHooks, type SessionPolicy } from './hooks.js';
import { LineBatcher, splitLines } from './line-batcher.js';
import { decideEndOfData, type EndOfDataDecision } from './end-of-data.js';
import { MessageAnalyser } from '../message/index.js';
import { rewriteHeader } from '../queue/header-rewrite.js';
import { newQueueId } from '../queue/spool.js';
import { rblAction, runRbl } from './rbl-stage.js';
import { initialPolicy } from './session-policy.js';
import { checkSpf } from '../policy/spf.js';
import { isTagged } from '../policy/batv.js';
import { interfaceAddresses, literalAddress } from '../policy/own-addresses.js';
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { DataSink } from './data-reader.js';

export type SessionMode = 'command' | 'data' | 'bdat';

const HELP_LINES = [
  'Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT',
  '          VRFY EXPN HELP STARTTLS AUTH',
  'moonpost SMTP server, see RFC 5321',
];
const MAX_AUTH_FAILURES = 3;
const CRLF = Buffer.from('\r\n');

const isRefusal = (r: Reply | null): r is Reply => !!r && r.code >= 400;
/** S4: what the command gets when its callback ran over its budget. */
const scriptStoppedReply = (): Reply => reply(451, '4.3.0', 'Local error in processing (script stopped)');

let sessionSeq = 0;

/**
 * The RFC 5321 state machine of one connection. It sees command lines and message bytes and
 * answers through `SessionIO`; it never touches sockets or files directly, so the same code
 * runs behind a real listener and behind a transcript.
 */
export class Session {
  readonly id = `S${Date.now().toString(36).toUpperCase()}${(++sessionSeq).toString(36).toUpperCase()}`;
  readonly log: Logger;
  mode: SessionMode = 'command';
  closed = false;

  helo: string | null = null;
  esmtp = false;
  authUser: string | null = null;
  private caps: string[] = [];
  private errors = 0;
  private authFailures = 0;
  private messages = 0;
  private tx: Transaction | null = null;
  private sasl: SaslExchange | null = null;
  /** While set, the next command line belongs to an AUTH exchange. */
  private lineHandler: ((line: string) => Promise<void> | void) | null = null;
  private bdatRemaining = 0;
  private bdatLast = false;
  /** The BDAT chunk being read will be discarded (its command was refused). */
  private bdatDiscard: Reply | null = null;
  private draining = false;
  /** What scripts may read and change; every check reads it at the moment it applies. */
  readonly policy: SessionPolicy;
  /** The message size limit of this session (GetMaxMessageSize may change it). */
  maxMessageSize: number;
  /** SMTPSVR.LUA for this session, when there is one. */
  hooks: SessionHooks | null = null;
  /** RBLResultInfo: zone → listing. */
  private rblInfo: Record<string, number> = {};

  constructor(
    private readonly ctx: ServiceContext,
    private readonly io: SessionIO,
    readonly client: ClientInfo,
  ) {
    this.log = ctx.log.child({ session: this.id });
    const limits = ctx.config.limits;
    this.maxMessageSize = limits.messageSize;
    this.policy = initialPolicy(ctx.config);
    this.policy.useBATV = ctx.config.batv.enabled && ctx.batv !== null;
    this.refreshClient();
  }

  /** Recomputes what depends on the client address (it changes behind a PROXY header). */
  refreshClient(): void {
    const mode = this.ctx.config.relay.mode;
    this.policy.validClient = this.ctx.relayNetworks.has(this.client.ip);
    this.policy.authRequired = mode === 'auth' || this.ctx.service.auth;
    // S24: "check client IP address" relaying, with no authentication needed.
    this.policy.localClient = this.policy.validClient && !this.policy.authRequired;
  }

  get validClient(): boolean {
    return this.policy.validClient;
  }

  /** S21: authenticated, or a local client address. */
  get locallySent(): boolean {
    return this.authUser !== null || this.policy.localClient;
  }

  private get limits() {
    return this.ctx.config.limits;
  }

  get maxLineLength(): number {
    return this.policy.maxLineLength || this.limits.lineLength;
  }

  /** The read-only globals of S7. */
  facts(): SessionFacts {
    return {
      ip: this.client.ip,
      sessionId: this.id,
      serviceId: this.ctx.service.id,
      serviceName: this.ctx.service.name,
      authUser: this.authUser ?? '',
      tls: this.client.tls ?? '',
      helo: this.helo ?? '',
      mailFrom: this.tx?.mail.address ?? '',
      rblResultInfo: this.rblInfo,
    };
  }

  get inTransaction(): boolean {
    return this.tx !== null;
  }

  /** S10: Start() → RBL lookups → RBLResults() → GetMaxMessageSize(ip) → greeting. */
  async greet(): Promise<void> {
    if (this.ctx.hooksFor) this.hooks = this.ctx.hooksFor(this.policy, () => this.facts(), this.log);
    let greeting = reply(220, undefined, `${this.ctx.config.hostname} ESMTP moonpost`);
    const h = this.hooks;
    let started: Reply | null = null;
    try {
      started = h?.start() ?? null;
    } catch (err) {
      if (!(err instanceof ScriptStopped)) throw err;
      return this.send(reply(421, '4.3.0', `${this.ctx.config.hostname} Service temporarily unavailable`));
    }
    if (started) greeting = started;
    if (!isRefusal(greeting)) {
      this.rblInfo = await runRbl(this.policy, this.client.ip, this.ctx.dns, this.ctx.config.rbl.deadlineMs);
      if (this.policy.rblFound) this.log.info({ ip: this.client.ip, rbl: this.rblInfo }, 'client listed in a DNS blocklist');
    }
    if (h && !this.closed) {
      try {
        if (!isRefusal(greeting)) {
          const rbl = h.rblResults();
          if (rbl) greeting = rbl;
        }
        if (!isRefusal(greeting)) this.maxMessageSize = h.maxMessageSize(this.client.ip, this.maxMessageSize);
      } catch (err) {
        if (!(err instanceof ScriptStopped)) throw err;
        greeting = reply(421, '4.3.0', `${this.ctx.config.hostname} Service temporarily unavailable`);
      }
    }
    if (isRefusal(greeting)) greeting = { ...greeting, close: true };
    this.send(greeting);
  }

  // ---- replies -------------------------------------------------------------------------

  private send(r: Reply): void {
    if (this.closed) return;
    if (r.code >= 400) this.errors++;
    this.io.send(r);
    // 421 always closes (S5); ForceDisconnect closes after the pending reply (S25).
    if (r.close || r.code === 421 || this.policy.forceDisconnect) this.shutdown();
    else if (this.errors >= this.limits.errors && r.code >= 400) {
      this.io.send(reply(421, '4.7.0', `${this.ctx.config.hostname} Too many errors, closing connection`));
      this.shutdown();
    }
  }

  private shutdown(): void {
    this.closed = true;
    this.io.close();
  }

  /** The connection is over for any reason: drop anything not committed, then End() once (S10). */
  async abort(why: string): Promise<void> {
    if (this.tx) {
      this.log.info({ queueId: this.tx.id, why }, 'transaction aborted');
      await this.tx.discard();
      this.tx = null;
    }
    const h = this.hooks;
    this.hooks = null;
    h?.end();
  }

  /** Server shutdown: idle sessions close at once, busy ones after their transaction. */
  drain(): void {
    this.draining = true;
    if (!this.tx && this.mode === 'command' && !this.lineHandler) this.sayGoodbye();
  }

  sayGoodbye(): void {
    if (this.closed) return;
    this.send({ ...reply(421, '4.3.2', `${this.ctx.config.hostname} Service shutting down, closing connection`), close: true });
  }

  lineTooLong(): void {
    if (this.lineHandler) {
      // A 500 ends an AUTH exchange (RFC 4954): the client's next line is a command again.
      this.lineHandler = null;
      this.sasl = null;
      return this.send(reply(500, '5.5.6', 'Authentication exchange line too long'));
    }
    this.send(reply(500, '5.5.2', `Line too long (limit ${this.maxLineLength} octets)`));
  }

  timeout(): void {
    this.send({ ...reply(421, '4.4.2', `${this.ctx.config.hostname} Timeout exceeded, closing connection`), close: true });
  }

  // ---- commands ------------------------------------------------------------------------

  /** One command line without its line ending. */
  command(line: string): Promise<void> | void {
    try {
      const r = this.dispatch(line);
      return r instanceof Promise ? r.catch((err) => this.scriptFailure(err)) : r;
    } catch (err) {
      return this.scriptFailure(err);
    }
  }

  /** S4: a callback over its budget costs the current command a 451. */
  private scriptFailure(err: unknown): void {
    if (!(err instanceof ScriptStopped)) throw err;
    this.send(scriptStoppedReply());
  }

  private dispatch(line: string): Promise<void> | void {
    if (this.lineHandler) return this.lineHandler(line);
    if (this.draining && !this.tx) return this.sayGoodbye();
    if (/[\x00\r]/.test(line)) return this.send(reply(500, '5.5.2', 'Invalid characters in command'));
    const sp = line.indexOf(' ');
    const verb = (sp < 0 ? line : line.slice(0, sp)).toUpperCase();
    const arg = sp < 0 ? '' : line.slice(sp + 1);
    switch (verb) {
      case 'EHLO':
        return this.cmdHelo(arg, true);
      case 'HELO':
        return this.cmdHelo(arg, false);
      case 'MAIL':
        return this.cmdMail(arg);
      case 'RCPT':
        return this.cmdRcpt(arg);
      case 'DATA':
        return this.cmdData(arg);
      case 'BDAT':
        return this.cmdBdat(arg);
      case 'RSET':
        if (arg.trim()) return this.send(reply(501, '5.5.4', 'Syntax: RSET'));
        return this.resetTransaction().then(() => this.send(this.hooks?.simple('RSET') ?? reply(250, '2.0.0', 'Ok')));
      case 'NOOP':
        return this.send(this.hooks?.simple('NOOP') ?? reply(250, '2.0.0', 'Ok'));
      case 'QUIT':
        return this.send({ ...(this.hooks?.simple('QUIT') ?? reply(221, '2.0.0', `${this.ctx.config.hostname} Bye`)), close: true });
      case 'VRFY':
        return this.cmdVrfy(arg);
      case 'EXPN':
        return this.cmdExpn(arg);
      case 'HELP':
        return this.cmdHelp();
      case 'STARTTLS':
        return this.cmdStartTls(arg);
      case 'AUTH':
        return this.cmdAuth(arg);
      default:
        return this.send(this.hooks?.unrecognised(line) ?? reply(500, '5.5.2', 'Command not recognized'));
    }
  }

  /** S13: the help text passes through DoHELP; lines without a code get 214. */
  private cmdHelp(): void {
    const lines = this.hooks ? this.hooks.help(HELP_LINES) : HELP_LINES;
    const parsed = lines.length && /^\d\d\d[ -]/.test(lines[0]) ? parseReplyText(lines.join('\r\n')) : null;
    this.send(parsed ?? reply(214, '2.0.0', ...lines));
  }

  private extension(name: string): boolean {
    // Before EHLO nothing is negotiated; stay lenient as Postfix does.
    return !this.esmtp || this.caps.some((c) => c.split(' ')[0].toUpperCase() === name);
  }

  private tlsAvailable(): boolean {
    return this.ctx.service.tls === 'starttls' && !this.client.tls;
  }

  private authAvailable(): boolean {
    return this.ctx.directory.users.size > 0 && (!!this.client.tls || this.ctx.service.authWithoutTls);
  }

  /** CRAM-MD5 only when some user has a secret it can use (a scrypt hash cannot serve it). */
  private mechanisms(): string[] {
    return SASL_MECHANISMS.filter((m) => m !== 'CRAM-MD5' || this.ctx.directory.hasCramUsers);
  }

  capabilities(): string[] {
    const caps = ['PIPELINING', `SIZE ${this.maxMessageSize}`, '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', 'CHUNKING', 'DSN'];
    if (this.tlsAvailable()) caps.push('STARTTLS');
    if (this.authAvailable() && !this.authUser) caps.push(`AUTH ${this.mechanisms().join(' ')}`);
    caps.push('HELP');
    return caps;
  }

  private async cmdHelo(arg: string, ehlo: boolean): Promise<void> {
    const host = arg.trim();
    if (!host || /\s/.test(host)) return this.send(reply(501, '5.5.4', `Syntax: ${ehlo ? 'EHLO' : 'HELO'} hostname`));
    await this.resetTransaction();
    const h = this.hooks;
    const greeting = `${this.ctx.config.hostname} Hello ${host} [${this.client.ip}]`;
    let caps: string[] = [];
    if (h) this.maxMessageSize = h.maxMessageSize(host, this.maxMessageSize);
    if (ehlo) {
      caps = this.capabilities();
      if (h) caps = h.ehloCapabilities(host, caps);
    }
    const decided = h ? h.helo(host, false, ehlo) : { refuse: false, reply: null };
    if (decided.refuse) {
      // S12: refused, the connection closes after the reply.
      const r = decided.reply && decided.reply.code >= 400 ? decided.reply : reply(554, '5.7.1', `${host}: Access denied`);
      return this.send({ ...r, close: true });
    }
    if (isRefusal(decided.reply)) return this.send(decided.reply);
    this.helo = host;
    this.esmtp = ehlo;
    this.caps = caps;
    this.send(decided.reply ?? reply(250, undefined, greeting, ...caps));
  }

  private async resetTransaction(): Promise<void> {
    if (this.tx) await this.tx.discard();
    this.tx = null;
  }

  private async cmdMail(arg: string): Promise<void> {
    if (!this.helo) return this.send(reply(503, '5.5.1', 'Send HELO/EHLO first'));
    if (this.tx) return this.send(reply(503, '5.5.1', 'Nested MAIL command'));
    if (this.ctx.service.auth && !this.authUser) return this.send(reply(530, '5.7.0', 'Authentication required'));
    const max = this.locallySent ? this.policy.maxMessagesLocal : this.limits.messagesPerSession;
    if (max > 0 && this.messages >= max) return this.send(reply(452, '4.5.3', 'Too many messages in this session'));
    const parsed = parseEsmtpLine(arg, 'FROM', { smtputf8: this.extension('SMTPUTF8'), dsn: this.extension('DSN') });
    if ('error' in parsed) return this.send(parsed.error);
    const mail = parsed as MailCommand;
    if (mail.body === '8BITMIME' && !this.extension('8BITMIME')) return this.send(reply(555, '5.5.4', 'BODY=8BITMIME not offered'));
    if (mail.size !== undefined && this.maxMessageSize > 0 && mail.size > this.maxMessageSize) {
      return this.send(reply(552, '5.3.4', 'Message size exceeds fixed maximum message size'));
    }
    // S15: SPF of the MAIL FROM domain (the HELO name for <>), "" when the service has it off.
    let spf = '';
    let spfHeader: string | null = null;
    if (this.ctx.service.spf) {
      const o = await checkSpf(this.ctx.dns, { ip: this.client.ip, sender: mail.address, helo: this.helo, hostname: this.ctx.config.hostname });
      spf = o.result;
      spfHeader = o.header;
    }
    let ok: Reply = reply(250, '2.1.0', 'Ok');
    if (this.hooks) {
      const r = this.hooks.mailFrom(mail.data, mail.address, mail.params, spf, this.authUser ?? '');
      if (isRefusal(r.reply)) return this.send(r.reply);
      const rewritten = r.params.MAILFROM;
      if (rewritten !== undefined) mail.address = rewritten.replace(/^<(.*)>$/, '$1');
      if (r.reply) ok = r.reply;
    }
    this.tx = new Transaction(this.ctx.spool, mail);
    if (spfHeader) this.tx.traceHeaders.push(spfHeader);
    this.send(ok);
  }

  /** S24: by client address unless AUTH is required, by AUTH unless the mode is IP-only. */
  private canRelay(): boolean {
    const mode = this.ctx.config.relay.mode;
    const p = this.policy;
    const byIp = mode !== 'auth' && p.validClient && !p.authRequired;
    return byIp || p.localClient || (mode !== 'ip' && this.authUser !== null);
  }

  private cmdRcpt(arg: string): void {
    const tx = this.tx;
    if (!tx) return this.send(reply(503, '5.5.1', 'Need MAIL command'));
    if (tx.writer) return this.send(reply(503, '5.5.1', 'Message data already started'));
    const parsed = parseEsmtpLine(arg, 'TO', { smtputf8: tx.mail.smtputf8, dsn: this.extension('DSN') });
    if ('error' in parsed) return this.send(parsed.error);
    const rcpt = parsed as RcptCommand;
    if (tx.mail.address === '' && this.policy.useBATV && this.ctx.batv) {
      // S26: a bounce to a local address must carry our valid prvs= tag; the tag is removed.
      const domain = rcpt.address.slice(rcpt.address.lastIndexOf('@') + 1);
      if (this.ctx.directory.isLocalDomain(domain)) {
        const original = isTagged(rcpt.address) ? this.ctx.batv.verify(rcpt.address) : null;
        if (!original) return this.refuseRcpt(tx, rcpt.address, reply(550, '5.7.1', `<${rcpt.address}>: bounce not for a message sent from here (BATV)`));
        rcpt.address = original;
      }
    }
    const max = this.locallySent ? this.policy.maxRecipientsLocal : this.policy.maxRecipientsIncoming;
    if (tx.rcptCount >= Math.min(max || Infinity, this.limits.recipients)) return this.send(reply(452, '4.5.3', 'Too many recipients'));
    const rbl = rblAction(this.policy);
    // A listed client's every RCPT is refused (S20), whatever the recipient becomes.
    const decide = (address: string): { targets: Target[] } | { refusal: Reply } => (rbl.kind === 'reject' ? { refusal: rbl.reply } : this.routeRecipient(address));
    let decision = decide(rcpt.address);
    if (this.hooks) {
      const r = this.hooks.rcptTo(rcpt.data, rcpt.address, rcpt.params, [...tx.rcptAddresses]);
      const replaced = r.params.RCPTTO?.replace(/^<(.*)>$/, '$1');
      if (replaced && replaced !== rcpt.address) {
        rcpt.address = replaced;
        decision = decide(replaced);
      }
      if (isRefusal(r.reply)) return this.refuseRcpt(tx, rcpt.address, r.reply);
      // S16: a 2xx from the script accepts what the default policy would refuse.
      if (r.reply) {
        const targets = 'targets' in decision ? decision.targets : this.forcedTargets(rcpt.address);
        tx.addRecipient(rcpt, targets);
        return this.send(r.reply);
      }
    }
    if ('refusal' in decision) return this.refuseRcpt(tx, rcpt.address, decision.refusal);
    tx.addRecipient(rcpt, decision.targets);
    this.send(reply(250, '2.1.5', 'Ok'));
  }

  /** A refused RCPT: answered, and remembered for LogRecipientsBlocked (S23). */
  private refuseRcpt(tx: Transaction, address: string, r: Reply): void {
    if (tx.blocked.length < 1000) tx.blocked.push({ address, reason: r.lines.join(' ') });
    this.send(r);
  }

  /** The default policy for one recipient: where it goes, or why not. */
  private routeRecipient(given: string): { targets: Target[] } | { refusal: Reply } {
    let address = given;
    const home = this.ctx.directory.firstDomain ?? this.ctx.config.hostname;
    // RFC 5321 §4.5.1: <postmaster> without a domain reaches this server's postmaster.
    if (!address.includes('@')) address = `postmaster@${home}`;
    // RFC 5321 §4.1.3: an address literal naming this host (user@[192.0.2.1]) is local, as
    // for Postfix: the first local domain's user, never a relay back to ourselves.
    const literal = literalAddress(address.slice(address.lastIndexOf('@') + 1));
    if (literal !== null && (literal === this.client.serverIp || interfaceAddresses().has(literal))) address = `${address.slice(0, address.lastIndexOf('@'))}@${home}`;
    const domain = address.slice(address.lastIndexOf('@') + 1);
    if (!this.canRelay() && /[%!]|@.*@/.test(address)) {
      // Sender-specified routing (user%remote@local, remote!user@local, "user@remote"@local)
      // from a client without relay rights is refused outright, never forwarded.
      return { refusal: reply(550, '5.7.1', `<${given}>: Sender-specified routing is not allowed`) };
    }
    const targets = this.ctx.directory.resolve(address);
    if (!targets) return { refusal: reply(550, '5.1.1', `<${given}>: Recipient address rejected: User unknown`) };
    const remote = targets.length === 1 && targets[0].route.kind === 'remote' && !this.ctx.directory.isLocalDomain(domain);
    if (remote && !this.canRelay()) return { refusal: reply(554, '5.7.1', `<${given}>: Relay access denied`) };
    return { targets };
  }

  /** Where a recipient the script accepted against the default policy goes. */
  private forcedTargets(address: string): Target[] {
    const at = address.lastIndexOf('@');
    const domain = address.slice(at + 1).toLowerCase();
    if (at > 0 && this.ctx.directory.isLocalDomain(domain)) {
      return [{ address, route: { kind: 'local', mailbox: `${domain}/${safeFolderName(address.slice(0, at))}` } }];
    }
    return [{ address, route: { kind: 'remote' } }];
  }

  private verifyTarget(arg: string): string {
    const name = arg.trim().replace(/^<(.*)>$/, '$1');
    return name.includes('@') ? name : `${name}@${this.ctx.directory.firstDomain ?? this.ctx.config.hostname}`;
  }

  private cmdVrfy(arg: string): void {
    if (!arg.trim()) return this.send(reply(501, '5.5.4', 'Syntax: VRFY address'));
    const current = reply(252, '2.1.5', 'Cannot VRFY user, but will accept message');
    if (!this.hooks) return this.send(current);
    this.send(this.hooks.verify('VRFY', this.ctx.directory.expand(this.verifyTarget(arg)), current));
  }

  private cmdExpn(arg: string): void {
    if (!arg.trim()) return this.send(reply(501, '5.5.4', 'Syntax: EXPN list'));
    const list = this.ctx.directory.expand(this.verifyTarget(arg));
    let current: Reply;
    if (!this.validClient && !this.authUser) current = reply(502, '5.5.1', 'EXPN not available');
    else if (!list.length) current = reply(550, '5.1.1', `<${arg.trim()}>: unknown list or user`);
    else current = reply(250, '2.1.5', ...list.map((a) => `<${a}>`));
    this.send(this.hooks ? this.hooks.verify('EXPN', list, current) : current);
  }

  // ---- TLS and AUTH --------------------------------------------------------------------

  private async cmdStartTls(arg: string): Promise<void> {
    if (arg.trim()) return this.send(reply(501, '5.5.4', 'Syntax: STARTTLS'));
    if (this.client.tls) return this.send(reply(503, '5.5.1', 'TLS already active'));
    if (!this.tlsAvailable() || !this.extension('STARTTLS')) return this.send(reply(502, '5.5.1', 'STARTTLS not available'));
    this.send(reply(220, '2.0.0', 'Ready to start TLS'));
    try {
      this.client.tls = await this.io.startTls();
    } catch (err) {
      this.log.info({ err: (err as Error).message }, 'TLS handshake failed');
      this.shutdown();
      return;
    }
    // RFC 3207 §4.2: forget everything learned before TLS.
    await this.resetTransaction();
    this.helo = null;
    this.esmtp = false;
    this.caps = [];
    this.log.info({ tls: this.client.tls }, 'TLS started');
  }

  private cmdAuth(arg: string): void | Promise<void> {
    if (!this.ctx.directory.users.size) return this.send(reply(503, '5.5.1', 'Authentication not enabled'));
    // S11: an extension the script removed from EHLO is switched off.
    if (this.authAvailable() && !this.extension('AUTH')) return this.send(reply(502, '5.5.1', 'AUTH not available'));
    if (!this.helo) return this.send(reply(503, '5.5.1', 'Send EHLO first'));
    if (this.authUser) return this.send(reply(503, '5.5.1', 'Already authenticated'));
    if (this.tx) return this.send(reply(503, '5.5.1', 'AUTH not allowed during a mail transaction'));
    if (!this.authAvailable()) return this.send(reply(538, '5.7.11', 'Encryption required for requested authentication mechanism'));
    const [mechRaw, initial, extra] = arg.trim().split(' ');
    const mech = (mechRaw ?? '').toUpperCase();
    if (!mech || extra !== undefined) return this.send(reply(501, '5.5.4', 'Syntax: AUTH mechanism [initial-response]'));
    if (!this.mechanisms().includes(mech)) return this.send(reply(504, '5.5.4', 'Unrecognized authentication type'));
    if (this.ctx.authThrottle.blocked(this.client.ip)) return this.authBlocked();
    this.sasl = new SaslExchange(mech, this.ctx.config.hostname);
    return this.saslStep(this.sasl.start(initial));
  }

  private async saslStep(step: SaslStep): Promise<void> {
    if (step.kind === 'challenge') {
      this.lineHandler = (line) => {
        if (line.length > 12288) return this.saslStep({ kind: 'error', code: 500, enhanced: '5.5.6', text: 'Authentication exchange line too long' });
        return this.saslStep(this.sasl!.next(line));
      };
      return this.send(reply(334, undefined, step.text));
    }
    this.lineHandler = null;
    this.sasl = null;
    if (step.kind === 'error') return this.send(reply(step.code, step.enhanced, step.text));
    // Blocked while this exchange ran (failures on other connections): the answer is not checked.
    if (this.ctx.authThrottle.blocked(this.client.ip)) return this.authBlocked();
    const user = this.ctx.directory.users.get(step.user) ?? this.ctx.directory.userByAddress(step.user);
    let ok = false;
    if (user && step.kind === 'cram') {
      const want = user.cramSecret ? createHmac('md5', user.cramSecret).update(step.challenge).digest('hex') : '';
      ok = want.length === step.digest.length && timingSafeEqual(Buffer.from(want), Buffer.from(step.digest));
    } else if (user && step.kind === 'credentials') {
      ok = !!user.passwordHash && (step.authzid === '' || step.authzid === step.user) && (await verifyPassword(step.password, user.passwordHash));
    }
    if (!ok || !user) return this.authFailed(step.user);
    const allowed = this.policy.allowedUsers.trim();
    if (allowed && !allowed.split(/\s+/).some((u) => u.toLowerCase() === user.name.toLowerCase())) {
      // S24: AllowedUsers limits who may authenticate from this address.
      this.log.warn({ user: user.name, ip: this.client.ip }, 'user not allowed to authenticate from this address');
      return this.authFailed(user.name);
    }
    this.ctx.authThrottle.succeed(this.client.ip);
    this.authUser = user.name;
    this.log.info({ user: user.name }, 'authenticated');
    this.send(reply(235, '2.7.0', 'Authentication successful'));
  }

  private authBlocked(): void {
    this.send({ ...reply(421, '4.7.0', `${this.ctx.config.hostname} Too many failed authentications, try again later`), close: true });
  }

  /**
   * A failed AUTH: answered after a delay that grows with the address's recent failures
   * (across connections), and the connection closes after three in one session.
   */
  private async authFailed(user: string): Promise<void> {
    this.authFailures++;
    const delay = this.ctx.authThrottle.fail(this.client.ip);
    this.log.warn({ user, ip: this.client.ip, failures: this.authFailures, delayMs: delay }, 'authentication failed');
    if (delay) await new Promise((res) => setTimeout(res, delay));
    const r = reply(535, '5.7.8', 'Authentication credentials invalid');
    this.send(this.authFailures >= MAX_AUTH_FAILURES ? { ...r, close: true } : r);
  }

  // ---- message data --------------------------------------------------------------------

  private dataRefusal(): Reply | null {
    if (!this.tx) return reply(503, '5.5.1', 'Need MAIL command');
    if (this.tx.rcptCount === 0) return reply(554, '5.5.1', 'No valid recipients');
    return null;
  }

  private async cmdData(arg: string): Promise<void> {
    if (arg.trim()) return this.send(reply(501, '5.5.4', 'Syntax: DATA'));
    const refusal = this.dataRefusal();
    if (refusal) return this.send(refusal);
    if (this.tx!.writer) return this.send(reply(503, '5.5.1', 'BDAT in progress, DATA not allowed'));
    const refused = this.dataStartHook();
    if (refused) return this.send(refused);
    this.startMessage(true);
    // S5: a 3xx from DoDATAStart replaces the default go-ahead text.
    const own = this.tx!.dataStartReply;
    this.send(own && own.code >= 300 && own.code < 400 ? own : reply(354, undefined, 'End data with <CR><LF>.<CR><LF>'));
    this.scriptStep(() => this.hooks?.startMessage());
  }

  /** DoDATAStart (S17): a refusal, or header lines kept for the message. */
  private dataStartHook(): Reply | null {
    if (!this.hooks) return null;
    let r: { reply: Reply | null; headers: string[] };
    try {
      r = this.hooks.dataStart([...this.tx!.rcptAddresses]);
    } catch (err) {
      // A stop is a refusal like any other, so that BDAT still reads its chunk as data.
      if (!(err instanceof ScriptStopped)) throw err;
      return scriptStoppedReply();
    }
    if (isRefusal(r.reply)) return r.reply;
    this.tx!.extraHeaders = r.headers;
    this.tx!.dataStartReply = r.reply;
    return null;
  }

  /** Runs a hook inside the data phase, where a stop cannot be answered until the end. */
  private scriptStep(fn: () => void): void {
    const tx = this.tx;
    if (!tx || tx.scriptStopped) return;
    try {
      fn();
    } catch (err) {
      if (!(err instanceof ScriptStopped)) throw err;
      tx.scriptStopped = true;
    }
  }

  private startMessage(dotMode: boolean): void {
    const tx = this.tx!;
    const writer = tx.start();
    const head = [Buffer.from(tx.returnPathLine()), Buffer.from(this.received(tx))];
    const rblHeader = this.policy.rblFound && this.policy.rblHeader.trim();
    if (rblHeader) tx.traceHeaders.push(rblHeader.replace(/[\r\n]+/g, ' '));
    for (const h of [...tx.traceHeaders, ...tx.extraHeaders]) head.push(Buffer.from(`${h}\r\n`));
    // The whole-message callbacks (S19) need the analysis, made as the bytes are stored.
    const analyser = this.hooks?.wantsAnalysis || this.ctx.config.monitorBcc ? new MessageAnalyser() : null;
    tx.analyser = analyser;
    const store = (bufs: Buffer[]): void => {
      if (analyser) for (const b of bufs) analyser.write(b);
      if (!writer.write(bufs)) {
        this.io.pause();
        writer.onDrain(() => this.io.resume());
      }
    };
    store(head);
    let sink: DataSink = { write: store };
    if (this.hooks?.wantsLines) sink = this.lineHookSink(tx, store);
    tx.reader = new DataReader(sink, dotMode, this.maxMessageSize, this.maxLineLength);
    this.mode = dotMode ? 'data' : 'bdat';
    this.io.setPhase('data');
  }

  /**
   * S18: every stored line through MessageLineRaw and MessageLine, which may replace or drop
   * it. The lines go to the script a block at a time (the whole lines of one socket read), and
   * where every line is kept the block is stored as it is.
   */
  private lineHookSink(tx: Transaction, store: (bufs: Buffer[]) => void): DataSink {
    const hooks = this.hooks!;
    const batcher = new LineBatcher(this.maxLineLength);
    let index = 0;
    return {
      write: (bufs) => {
        const block = batcher.take(bufs);
        if (!block) return;
        const reader = tx.reader!;
        // The reader has counted every line it has handed on.
        const count = reader.linesDone - index;
        const dotted: number[] = [];
        while (reader.dottedLines.length && reader.dottedLines[0] < index + count) dotted.push(reader.dottedLines.shift()! - index);
        index += count;
        let outs: (Buffer | false | null)[] | null = null;
        this.scriptStep(() => {
          outs = hooks.messageLines(block, count, dotted);
        });
        if (!outs) {
          store(block);
          return;
        }
        const results: (Buffer | false | null)[] = outs;
        const stored: Buffer[] = [];
        splitLines(block).forEach((line, i) => {
          const out = results[i] ?? null;
          if (out === false) return;
          if (out === null) stored.push(line, CRLF);
          // A replacement may hold several lines; each is stored with CRLF.
          else for (const l of out.toString('latin1').split(/\r?\n/)) stored.push(Buffer.from(`${l}\r\n`, 'latin1'));
        });
        if (stored.length) store(stored);
      },
    };
  }

  private received(tx: Transaction): string {
    let protocol = this.esmtp ? 'ESMTP' : 'SMTP';
    if (this.esmtp && (this.client.tls || this.authUser)) protocol += `${this.client.tls ? 'S' : ''}${this.authUser ? 'A' : ''}`;
    if (tx.mail.smtputf8) protocol = `UTF8${protocol}`;
    return receivedHeader({
      helo: this.helo ?? '',
      ip: this.client.ip,
      hostname: this.ctx.config.hostname,
      protocol,
      id: tx.id,
      tls: this.client.tls,
      recipient: tx.rcptCount === 1 ? tx.firstRecipient : undefined,
    });
  }

  /** Message bytes of DATA; returns the offset after the final dot line, or -1. */
  data(chunk: Buffer, start: number): number {
    return this.tx!.reader!.push(chunk, start);
  }

  async endData(): Promise<void> {
    this.mode = 'command';
    this.io.setPhase('command');
    await this.finishMessage();
  }

  private async finishMessage(): Promise<void> {
    const tx = this.tx!;
    const reader = tx.reader!;
    reader.finish();
    let endReply: Reply | null = null;
    let decision: EndOfDataDecision | null = null;
    // While the transaction is still the session's, so that MailFrom is its sender (S7).
    if (!reader.tooBig && !reader.longLine) {
      this.scriptStep(() => (endReply = this.hooks?.endMessage() ?? null));
      if (tx.analyser && !tx.scriptStopped && !isRefusal(endReply)) {
        // ProcessMessage's helpers read the stored file: every byte must be in it first. A
        // write error shows again at the commit, which then refuses the message.
        await tx.writer!.flushed().catch(() => undefined);
        // The client went away meanwhile: abort() has dropped the transaction.
        if (this.tx !== tx) return;
        decision = this.endOfData(tx, reader.size);
      }
    }
    this.tx = null;
    this.send(await this.settle(tx, reader, endReply, decision));
    if (this.draining) this.sayGoodbye();
  }

  /** S19: analysis, then CheckRecipients → ProcessMessage → MonitorBcc → LogRecipients. */
  private endOfData(tx: Transaction, size: number): EndOfDataDecision | null {
    const analysis = tx.analyser!.end();
    // The helpers read the stored file, our trace header lines included: the Start/End
    // offsets of the structure count them too, so its end is the analysed size.
    const message = { path: this.ctx.spool.messagePath(tx.id), size: analysis.size, structure: analysis.structure };
    let decision: EndOfDataDecision | null = null;
    this.scriptStep(() => {
      decision = decideEndOfData({
        hooks: this.hooks,
        analysis,
        recipients: [...tx.rcptAddresses],
        blocked: tx.blocked,
        sender: tx.mail.address,
        authSender: this.authUser ?? '',
        ip: this.client.ip,
        locallySent: this.locallySent,
        size,
        monitor: this.ctx.config.monitorBcc,
        message,
      });
    });
    return decision;
  }

  /** Refuses, discards or commits the finished message; returns the final reply. */
  private async settle(tx: Transaction, reader: DataReader, endReply: Reply | null, decision: EndOfDataDecision | null): Promise<Reply> {
    const outcome = async (what: string, r: Reply): Promise<Reply> => {
      this.log.info({ queueId: tx.id, from: tx.mail.address, to: tx.rcptAddresses, size: reader.size, ip: this.client.ip, outcome: what }, `message ${what}`);
      this.ctx.observer?.message(this.id, { queueId: tx.id, outcome: what, from: tx.mail.address, to: [...tx.rcptAddresses], size: reader.size, reply: r });
      await tx.discard();
      return r;
    };
    if (tx.scriptStopped) return outcome('refused: script stopped', scriptStoppedReply());
    if (isRefusal(endReply)) return outcome('refused: EndMessage', endReply);
    if (reader.tooBig) return outcome('refused: size', reply(552, '5.3.4', 'Message size exceeds fixed maximum message size'));
    if (reader.longLine) return outcome('refused: line length', reply(552, '5.3.4', `Message line longer than ${this.maxLineLength} octets`));
    if (decision?.kind === 'refuse') return outcome('refused: script', decision.reply);
    const rbl = rblAction(this.policy);
    // S19 Ignore and S20 RBLBlackhole: accepted and discarded.
    if (decision?.kind === 'discard' || rbl.kind === 'blackhole') return outcome('discarded', reply(250, '2.0.0', `Ok: queued as ${tx.id}`));
    const env = this.envelope(tx, reader.size);
    if (rbl.kind === 'redirect') env.recipients = this.envelopeTargets([rbl.to]);
    const accepted = decision?.kind === 'accept' ? decision : null;
    if (accepted?.recipients.replace) env.recipients = this.envelopeTargets(accepted.recipients.add);
    else if (accepted?.recipients.add.length) {
      const have = new Set(env.recipients.map((r) => r.address.toLowerCase()));
      env.recipients.push(...this.envelopeTargets(accepted.recipients.add).filter((r) => !have.has(r.address.toLowerCase())));
    }
    if (!env.recipients.length) return outcome('discarded: no recipients left', reply(250, '2.0.0', `Ok: queued as ${tx.id}`));
    let settled = false;
    try {
      const path = this.ctx.spool.messagePath(tx.id);
      if (accepted?.headerModifiers.length) {
        await tx.writer!.finish(false);
        await rewriteHeader(path, accepted.headerModifiers, env.headerOffset, this.ctx.spool.fsync);
      } else await tx.writer!.finish(this.ctx.spool.fsync);
      // The BCC monitor's copy is made from the queue file: that message takes the queue's path.
      if (!accepted?.monitor && this.ctx.deliverNow) {
        // The file holds what the writer was given, unless a script rewrote the header.
        const size = accepted?.headerModifiers.length ? undefined : tx.writer!.bytes;
        settled = await this.ctx.deliverNow.settle(env, path, this.log, size);
      }
      if (!settled) await this.ctx.spool.commitEnvelope(env);
    } catch (err) {
      this.log.error({ queueId: tx.id, err: (err as Error).message, outcome: 'deferred' }, 'queue commit failed');
      return outcome('deferred', reply(451, '4.3.0', 'Local error in processing, try again later'));
    }
    this.messages++;
    this.log.info(
      { queueId: tx.id, from: env.sender, to: env.recipients.map((x) => x.address), size: env.size, ip: this.client.ip, outcome: settled ? 'delivered' : 'queued' },
      settled ? 'message delivered' : 'message queued',
    );
    if (settled) {
      // In every mailbox now: the queue's name for it goes (a crash first leaves an orphan
      // file, which recovery removes).
      await tx.discard();
    } else {
      // The copy is made from the queue file, so before delivery may remove it.
      if (accepted?.monitor) await this.queueMonitorCopy(env, accepted.monitor);
      this.ctx.onQueued(env);
    }
    const ok = endReply ?? reply(250, '2.0.0', `Ok: queued as ${tx.id}`);
    this.ctx.observer?.message(this.id, { queueId: tx.id, outcome: 'queued', from: env.sender, to: env.recipients.map((x) => x.address), size: env.size, reply: ok });
    return ok;
  }

  /** Envelope recipients for addresses a script or the RBL added: routed like any other. */
  private envelopeTargets(addresses: string[]): Envelope['recipients'] {
    return addresses.flatMap((a) => (this.ctx.directory.resolve(a) ?? this.forcedTargets(a)).map((t) => ({ address: t.address, route: t.route, state: 'pending' as const })));
  }

  /** S22: a copy of a message with BCC recipients, naming them in a header, to the monitor. */
  private async queueMonitorCopy(env: Envelope, monitor: { to: string; bcc: string[] }): Promise<void> {
    const id = newQueueId();
    const returnPath = `Return-Path: <${env.sender}>\r\n`;
    try {
      await this.ctx.spool.writeCopy(env.id, id, `${returnPath}X-Bcc-Recipients: ${monitor.bcc.join(', ')}\r\n`, env.headerOffset);
      const copy: Envelope = { ...env, id, recipients: this.envelopeTargets([monitor.to]), headerOffset: Buffer.byteLength(returnPath), dsn: undefined };
      await this.ctx.spool.commitEnvelope(copy);
      this.log.info({ queueId: id, original: env.id, to: monitor.to, bcc: monitor.bcc }, 'BCC monitor copy queued');
      this.ctx.onQueued(copy);
    } catch (err) {
      // The original is already acknowledged and safe; a lost copy is logged, not fatal.
      this.log.error({ queueId: env.id, err: (err as Error).message }, 'BCC monitor copy failed');
    }
  }

  private envelope(tx: Transaction, size: number): Envelope {
    return {
      id: tx.id,
      sender: tx.mail.address,
      recipients: tx.recipients,
      received: new Date().toISOString(),
      headerOffset: Buffer.byteLength(tx.returnPathLine()),
      size,
      client: { ip: this.client.ip, helo: this.helo ?? '', authUser: this.authUser ?? undefined, tls: this.client.tls },
      service: { id: this.ctx.service.id, name: this.ctx.service.name },
      body: tx.mail.body,
      smtputf8: tx.mail.smtputf8 || undefined,
      dsn: tx.mail.ret || tx.mail.envid ? { ret: tx.mail.ret, envid: tx.mail.envid } : undefined,
    };
  }

  private cmdBdat(arg: string): void | Promise<void> {
    const m = /^(\d{1,15})(?: +(LAST))? *$/i.exec(arg.trim());
    if (!m) return this.send({ ...reply(501, '5.5.4', 'Syntax: BDAT size [LAST]'), close: true });
    const size = Number(m[1]);
    const last = !!m[2];
    let refusal = this.extension('CHUNKING') ? this.dataRefusal() : reply(502, '5.5.1', 'BDAT not available');
    if (!refusal && !this.tx!.writer) refusal = this.dataStartHook();
    this.bdatRemaining = size;
    this.bdatLast = last;
    this.bdatDiscard = refusal;
    if (!refusal && !this.tx!.writer) {
      this.tx!.bdat = true;
      this.startMessage(false);
      this.scriptStep(() => this.hooks?.startMessage());
    }
    this.mode = 'bdat';
    if (size === 0) return this.endBdatChunk();
  }

  /** How many more bytes the current BDAT chunk needs. */
  get bdatNeeded(): number {
    return this.bdatRemaining;
  }

  bdat(chunk: Buffer, start: number, end: number): void {
    this.bdatRemaining -= end - start;
    if (!this.bdatDiscard) this.tx!.reader!.push(chunk, start, end);
  }

  async endBdatChunk(): Promise<void> {
    this.mode = 'command';
    if (this.bdatDiscard) {
      const r = this.bdatDiscard;
      this.bdatDiscard = null;
      // A refused chunk ends the transaction it belonged to (RFC 3030 §3).
      if (this.tx?.bdat) await this.resetTransaction();
      return this.send(r);
    }
    if (this.bdatLast) {
      this.io.setPhase('command');
      return this.finishMessage();
    }
    this.send(reply(250, '2.0.0', `${this.tx!.reader!.size} octets received`));
  }
}
