import type { Logger } from 'pino';
import type { ClientInfo, ServiceContext, SessionIO } from './context.js';
import { reply, type Reply } from './reply.js';
import { SaslExchange, SASL_MECHANISMS, type SaslStep } from './sasl.js';
import { verifyPassword } from '../policy/password.js';
import { parseEsmtpLine, type MailCommand, type RcptCommand } from './envelope-args.js';
import { Transaction } from './transaction.js';
import { DataReader } from './data-reader.js';
import { receivedHeader } from './received.js';
import type { Envelope } from '../queue/envelope.js';

export type SessionMode = 'command' | 'data' | 'bdat';

const HELP_LINES = [
  'Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT',
  '          VRFY EXPN HELP STARTTLS AUTH',
  'moonpost SMTP server, see RFC 5321',
];
const MAX_AUTH_FAILURES = 3;

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
  validClient = false;

  constructor(
    private readonly ctx: ServiceContext,
    private readonly io: SessionIO,
    readonly client: ClientInfo,
  ) {
    this.log = ctx.log.child({ session: this.id });
    this.refreshClient();
  }

  /** Recomputes what depends on the client address (it changes behind a PROXY header). */
  refreshClient(): void {
    this.validClient = this.ctx.relayNetworks.has(this.client.ip);
  }

  private get limits() {
    return this.ctx.config.limits;
  }

  get maxLineLength(): number {
    return this.limits.lineLength;
  }

  get inTransaction(): boolean {
    return this.tx !== null;
  }

  greet(): void {
    this.send(reply(220, undefined, `${this.ctx.config.hostname} ESMTP moonpost`));
  }

  // ---- replies -------------------------------------------------------------------------

  private send(r: Reply): void {
    if (this.closed) return;
    if (r.code >= 400) this.errors++;
    this.io.send(r);
    if (r.close) this.shutdown();
    else if (this.errors >= this.limits.errors && r.code >= 400) {
      this.io.send(reply(421, '4.7.0', `${this.ctx.config.hostname} Too many errors, closing connection`));
      this.shutdown();
    }
  }

  private shutdown(): void {
    this.closed = true;
    this.io.close();
  }

  /** Client gone, timeout or server stop: drop anything not committed. */
  async abort(why: string): Promise<void> {
    if (this.tx) {
      this.log.info({ queueId: this.tx.id, why }, 'transaction aborted');
      await this.tx.discard();
      this.tx = null;
    }
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
    this.send(reply(500, '5.5.2', `Line too long (limit ${this.maxLineLength} octets)`));
  }

  timeout(): void {
    this.send({ ...reply(421, '4.4.2', `${this.ctx.config.hostname} Timeout exceeded, closing connection`), close: true });
  }

  // ---- commands ------------------------------------------------------------------------

  /** One command line without its line ending. */
  command(line: string): Promise<void> | void {
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
        return this.resetTransaction().then(() => this.send(reply(250, '2.0.0', 'Ok')));
      case 'NOOP':
        return this.send(reply(250, '2.0.0', 'Ok'));
      case 'QUIT':
        return this.send({ ...reply(221, '2.0.0', `${this.ctx.config.hostname} Bye`), close: true });
      case 'VRFY':
        return this.cmdVrfy(arg);
      case 'EXPN':
        return this.cmdExpn(arg);
      case 'HELP':
        return this.send(reply(214, '2.0.0', ...HELP_LINES));
      case 'STARTTLS':
        return this.cmdStartTls(arg);
      case 'AUTH':
        return this.cmdAuth(arg);
      default:
        return this.send(reply(500, '5.5.2', 'Command not recognized'));
    }
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

  capabilities(): string[] {
    const caps = ['PIPELINING', `SIZE ${this.limits.messageSize}`, '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', 'CHUNKING', 'DSN'];
    if (this.tlsAvailable()) caps.push('STARTTLS');
    if (this.authAvailable() && !this.authUser) caps.push(`AUTH ${SASL_MECHANISMS.join(' ')}`);
    caps.push('HELP');
    return caps;
  }

  private async cmdHelo(arg: string, ehlo: boolean): Promise<void> {
    const host = arg.trim();
    if (!host || /\s/.test(host)) return this.send(reply(501, '5.5.4', `Syntax: ${ehlo ? 'EHLO' : 'HELO'} hostname`));
    await this.resetTransaction();
    this.helo = host;
    this.esmtp = ehlo;
    const greeting = `${this.ctx.config.hostname} Hello ${host} [${this.client.ip}]`;
    if (!ehlo) return this.send(reply(250, undefined, greeting));
    this.caps = this.capabilities();
    this.send(reply(250, undefined, greeting, ...this.caps));
  }

  private async resetTransaction(): Promise<void> {
    if (this.tx) await this.tx.discard();
    this.tx = null;
  }

  private cmdMail(arg: string): void {
    if (!this.helo) return this.send(reply(503, '5.5.1', 'Send HELO/EHLO first'));
    if (this.tx) return this.send(reply(503, '5.5.1', 'Nested MAIL command'));
    if (this.ctx.service.auth && !this.authUser) return this.send(reply(530, '5.7.0', 'Authentication required'));
    const max = this.limits.messagesPerSession;
    if (max > 0 && this.messages >= max) return this.send(reply(452, '4.5.3', 'Too many messages in this session'));
    const parsed = parseEsmtpLine(arg, 'FROM', { smtputf8: this.extension('SMTPUTF8'), dsn: this.extension('DSN') });
    if ('error' in parsed) return this.send(parsed.error);
    const mail = parsed as MailCommand;
    if (mail.body === '8BITMIME' && !this.extension('8BITMIME')) return this.send(reply(555, '5.5.4', 'BODY=8BITMIME not offered'));
    if (mail.size !== undefined && this.limits.messageSize > 0 && mail.size > this.limits.messageSize) {
      return this.send(reply(552, '5.3.4', 'Message size exceeds fixed maximum message size'));
    }
    this.tx = new Transaction(this.ctx.spool, mail);
    this.send(reply(250, '2.1.0', 'Ok'));
  }

  private canRelay(): boolean {
    const mode = this.ctx.config.relay.mode;
    return (mode !== 'auth' && this.validClient) || (mode !== 'ip' && this.authUser !== null);
  }

  private cmdRcpt(arg: string): void {
    if (!this.tx) return this.send(reply(503, '5.5.1', 'Need MAIL command'));
    if (this.tx.writer) return this.send(reply(503, '5.5.1', 'Message data already started'));
    const parsed = parseEsmtpLine(arg, 'TO', { smtputf8: this.tx.mail.smtputf8, dsn: this.extension('DSN') });
    if ('error' in parsed) return this.send(parsed.error);
    const rcpt = parsed as RcptCommand;
    if (this.tx.rcptCount >= this.limits.recipients) return this.send(reply(452, '4.5.3', 'Too many recipients'));
    let address = rcpt.address;
    // RFC 5321 §4.5.1: <postmaster> without a domain reaches this server's postmaster.
    if (!address.includes('@')) address = `postmaster@${this.ctx.directory.firstDomain ?? this.ctx.config.hostname}`;
    const domain = address.slice(address.lastIndexOf('@') + 1);
    const targets = this.ctx.directory.resolve(address);
    if (!targets) return this.send(reply(550, '5.1.1', `<${rcpt.address}>: Recipient address rejected: User unknown`));
    const remote = targets.length === 1 && targets[0].route.kind === 'remote' && !this.ctx.directory.isLocalDomain(domain);
    if (remote && !this.canRelay()) return this.send(reply(554, '5.7.1', `<${rcpt.address}>: Relay access denied`));
    this.tx.addRecipient(rcpt, targets);
    this.send(reply(250, '2.1.5', 'Ok'));
  }

  private async cmdVrfy(arg: string): Promise<void> {
    if (!arg.trim()) return this.send(reply(501, '5.5.4', 'Syntax: VRFY address'));
    this.send(reply(252, '2.1.5', 'Cannot VRFY user, but will accept message'));
  }

  private cmdExpn(arg: string): void {
    const name = arg.trim().replace(/^<(.*)>$/, '$1');
    if (!name) return this.send(reply(501, '5.5.4', 'Syntax: EXPN list'));
    if (!this.validClient && !this.authUser) return this.send(reply(502, '5.5.1', 'EXPN not available'));
    const address = name.includes('@') ? name : `${name}@${this.ctx.directory.firstDomain ?? this.ctx.config.hostname}`;
    const list = this.ctx.directory.expand(address);
    if (!list.length) return this.send(reply(550, '5.1.1', `<${name}>: unknown list or user`));
    this.send(reply(250, '2.1.5', ...list.map((a) => `<${a}>`)));
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
    if (!this.helo) return this.send(reply(503, '5.5.1', 'Send EHLO first'));
    if (this.authUser) return this.send(reply(503, '5.5.1', 'Already authenticated'));
    if (this.tx) return this.send(reply(503, '5.5.1', 'AUTH not allowed during a mail transaction'));
    if (!this.authAvailable()) return this.send(reply(538, '5.7.11', 'Encryption required for requested authentication mechanism'));
    const [mechRaw, initial, extra] = arg.trim().split(' ');
    const mech = (mechRaw ?? '').toUpperCase();
    if (!mech || extra !== undefined) return this.send(reply(501, '5.5.4', 'Syntax: AUTH mechanism [initial-response]'));
    if (!(SASL_MECHANISMS as readonly string[]).includes(mech)) return this.send(reply(504, '5.5.4', 'Unrecognized authentication type'));
    this.sasl = new SaslExchange(mech);
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
    const user = this.ctx.directory.users.get(step.user) ?? this.ctx.directory.userByAddress(step.user);
    const ok =
      !!user?.passwordHash && (step.authzid === '' || step.authzid === step.user) && (await verifyPassword(step.password, user.passwordHash));
    if (!ok || !user) {
      this.authFailures++;
      this.log.warn({ user: step.user, failures: this.authFailures }, 'authentication failed');
      const r = reply(535, '5.7.8', 'Authentication credentials invalid');
      return this.send(this.authFailures >= MAX_AUTH_FAILURES ? { ...r, close: true } : r);
    }
    this.authUser = user.name;
    this.log.info({ user: user.name }, 'authenticated');
    this.send(reply(235, '2.7.0', 'Authentication successful'));
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
    this.startMessage(true);
    this.send(reply(354, undefined, 'End data with <CR><LF>.<CR><LF>'));
  }

  private startMessage(dotMode: boolean): void {
    const tx = this.tx!;
    const writer = tx.start();
    writer.write([Buffer.from(tx.returnPathLine()), Buffer.from(this.received(tx))]);
    tx.reader = new DataReader(
      {
        write: (bufs) => {
          if (!writer.write(bufs)) {
            this.io.pause();
            writer.onDrain(() => this.io.resume());
          }
        },
      },
      dotMode,
      this.limits.messageSize,
      this.maxLineLength,
    );
    this.mode = dotMode ? 'data' : 'bdat';
    this.io.setPhase('data');
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
    this.tx = null;
    let r: Reply;
    const logRefusal = (why: string): void =>
      this.log.info({ queueId: tx.id, from: tx.mail.address, to: tx.rcptAddresses, size: reader.size, ip: this.client.ip, outcome: 'refused', why }, 'message refused');
    if (reader.tooBig) {
      logRefusal('size');
      await tx.discard();
      r = reply(552, '5.3.4', 'Message size exceeds fixed maximum message size');
    } else if (reader.longLine) {
      logRefusal('line length');
      await tx.discard();
      r = reply(552, '5.3.4', `Message line longer than ${this.maxLineLength} octets`);
    } else {
      const env = this.envelope(tx, reader.size);
      try {
        await this.ctx.spool.commit(env, tx.writer!);
        this.messages++;
        r = reply(250, '2.0.0', `Ok: queued as ${tx.id}`);
        this.log.info(
          { queueId: tx.id, from: env.sender, to: env.recipients.map((x) => x.address), size: env.size, ip: this.client.ip, outcome: 'queued' },
          'message queued',
        );
        this.ctx.onQueued(env);
      } catch (err) {
        await tx.discard();
        this.log.error({ queueId: tx.id, err: (err as Error).message, outcome: 'deferred' }, 'queue commit failed');
        r = reply(451, '4.3.0', 'Local error in processing, try again later');
      }
    }
    this.send(r);
    if (this.draining) this.sayGoodbye();
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
    const refusal = this.dataRefusal();
    this.bdatRemaining = size;
    this.bdatLast = last;
    this.bdatDiscard = refusal;
    if (!refusal && !this.tx!.writer) {
      this.tx!.bdat = true;
      this.startMessage(false);
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
