import { createHash, type Hash } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { createServer as netServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createSecureContext, createServer as tlsServer, TLSSocket, type SecureContext } from 'node:tls';
import { makeCert } from './tls-cert.js';

/** What the server does for one command: reply (CRLF added per line), after a delay, then maybe close. */
export interface ScriptStep {
  reply?: string;
  delayMs?: number;
  close?: boolean;
  /** After replying, stop reading from the client (its writes then block). */
  pauseReading?: boolean;
}

/** Decides a reply; undefined falls back to the default behaviour. "." is the end of data. */
export type Responder = (command: string, session: ScriptedSession) => string | ScriptStep | undefined;

export interface ScriptedServerOptions {
  hostname?: string;
  /** Default `220 <hostname> ESMTP scripted`. */
  greeting?: string | ScriptStep;
  /** EHLO keywords after the first line; STARTTLS/AUTH are added when configured. */
  extensions?: string[];
  /** Offer STARTTLS (a throwaway certificate). */
  starttls?: boolean;
  /** TLS from the first byte. */
  implicitTls?: boolean;
  /** Accept AUTH PLAIN/LOGIN with these credentials (offered as `AUTH PLAIN LOGIN`). */
  auth?: { user: string; password: string };
  respond?: Responder;
  /** Keep a message's text and wire bytes while under this size (default 1 MiB). */
  keepBytes?: number;
}

export interface ReceivedMessage {
  /** Unstuffed size and SHA-256 of the data (CRLFs included, the final "." excluded). */
  size: number;
  sha256: string;
  /** The unstuffed data when under `keepBytes`. */
  text: string | null;
  /** The data exactly as it came over the wire (still dot-stuffed, with ".\r\n") when under `keepBytes`. */
  wire: string | null;
}

export interface ScriptedSession {
  /** Every command line (AUTH continuation lines included), in order, without CRLF. */
  commands: string[];
  /** For each command, the number of the socket read it arrived in (same number: one write). */
  reads: number[];
  messages: ReceivedMessage[];
  tls: boolean;
  authUser?: string;
  closed: boolean;
  /** Bytes read from the client so far (live). */
  bytesIn: number;
  /** Bytes received after the STARTTLS command in the same read (a client must not pipeline them). */
  injected: string;
}

export const DEFAULT_EXTENSIONS = ['PIPELINING', 'SIZE 10240000', '8BITMIME', 'SMTPUTF8', 'DSN', 'ENHANCEDSTATUSCODES'];

/**
 * A tiny SMTP server for client tests: answers each command from a per-test script (or the
 * defaults below), records what it got, and can omit extensions, delay, close, stop reading,
 * do STARTTLS or implicit TLS and AUTH. Defaults: EHLO lists `extensions`; MAIL/RCPT 250;
 * DATA 354 when some RCPT got a 2xx, else 554; "." 250; RSET/NOOP 250; QUIT 221 and close.
 */
export class ScriptedServer {
  readonly sessions: ScriptedSession[] = [];
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly context: SecureContext | null;
  private readonly certDir: string | null;
  /** PEM of the server certificate (for a client's `ca`), when TLS is on. */
  readonly certPem: string | null;
  private readonly keyPem: string | null;
  port = 0;

  constructor(readonly opts: ScriptedServerOptions = {}) {
    if (opts.starttls || opts.implicitTls) {
      const c = makeCert();
      this.certDir = c.dir;
      this.certPem = readFileSync(c.cert, 'utf8');
      this.keyPem = readFileSync(c.key, 'utf8');
      this.context = createSecureContext({ cert: this.certPem, key: this.keyPem });
    } else {
      this.certDir = null;
      this.certPem = null;
      this.keyPem = null;
      this.context = null;
    }
    const onSocket = (s: Socket): void => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      new Conversation(this, s, this.context).start();
    };
    this.server = opts.implicitTls ? tlsServer({ cert: this.certPem!, key: this.keyPem! }, onSocket) : netServer(onSocket);
  }

  get hostname(): string {
    return this.opts.hostname ?? 'scripted.test';
  }

  get secureContext(): SecureContext | null {
    return this.context;
  }

  /** Listens on `host:port` (default an ephemeral port on 127.0.0.1; MX tests use 127.0.0.x with one port). */
  async listen(port = 0, host = '127.0.0.1'): Promise<this> {
    await new Promise<void>((res, rej) => {
      this.server.once('error', rej);
      this.server.listen(port, host, () => {
        this.server.off('error', rej);
        res();
      });
    });
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  /** Waits until `n` sessions have ended. */
  async closedSessions(n: number, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.sessions.filter((s) => s.closed).length < n) {
      if (Date.now() > deadline) throw new Error(`scripted server: ${n} closed sessions expected`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((res) => this.server.close(() => res()));
    if (this.certDir) rmSync(this.certDir, { recursive: true, force: true });
  }
}

export async function startScriptedServer(opts: ScriptedServerOptions = {}, port = 0, host = '127.0.0.1'): Promise<ScriptedServer> {
  return new ScriptedServer(opts).listen(port, host);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

class Conversation {
  private readonly session: ScriptedSession = {
    commands: [],
    reads: [],
    messages: [],
    tls: false,
    closed: false,
    injected: '',
    bytesIn: 0,
  };
  private buf = Buffer.alloc(0);
  private reads = 0;
  private busy = false;
  private mode: 'command' | 'data' | 'auth-plain' | 'auth-user' | 'auth-pass' = 'command';
  private accepted = 0;
  private authUser = '';
  private data: { hash: Hash; size: number; text: Buffer[]; wire: Buffer[]; kept: number } | null = null;

  constructor(
    private readonly server: ScriptedServer,
    private socket: Socket,
    private readonly context: SecureContext | null,
  ) {
    server.sessions.push(this.session);
    this.session.tls = socket instanceof TLSSocket;
  }

  start(): void {
    this.bind();
    const g = this.server.opts.greeting ?? `220 ${this.server.hostname} ESMTP scripted`;
    this.busy = true;
    void this.act(typeof g === 'string' ? { reply: g } : g).then(() => {
      this.busy = false;
      void this.pump();
    });
  }

  private bind(): void {
    this.socket.on('data', (d: Buffer) => {
      this.reads++;
      this.session.bytesIn += d.length;
      this.buf = Buffer.concat([this.buf, d]);
      void this.pump();
    });
    this.socket.on('close', () => (this.session.closed = true));
    this.socket.on('error', () => undefined);
  }

  private write(text: string): void {
    if (!this.socket.destroyed) this.socket.write(text.split(/\r?\n/).join('\r\n') + '\r\n');
  }

  private async act(step: ScriptStep): Promise<void> {
    if (step.delayMs) await sleep(step.delayMs);
    if (step.reply !== undefined) this.write(step.reply);
    if (step.pauseReading) this.socket.pause();
    if (step.close) this.socket.destroy();
  }

  private async pump(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      for (;;) {
        if (this.session.closed || this.socket.destroyed) return;
        const lf = this.buf.indexOf(0x0a);
        if (lf < 0) return;
        const line = this.buf.subarray(0, lf + 1);
        this.buf = this.buf.subarray(lf + 1);
        if (this.mode === 'data') {
          if (line.toString('latin1') === '.\r\n') await this.endData(line);
          else this.dataLine(line);
          continue;
        }
        const text = line.toString('utf8').replace(/\r?\n$/, '');
        this.session.commands.push(text);
        this.session.reads.push(this.reads);
        await this.command(text);
      }
    } finally {
      this.busy = false;
    }
  }

  private dataLine(line: Buffer): void {
    const d = this.data!;
    const body = line[0] === 0x2e ? line.subarray(1) : line;
    d.hash.update(body);
    d.size += body.length;
    if (d.kept < (this.server.opts.keepBytes ?? 1024 * 1024)) {
      d.text.push(Buffer.from(body));
      d.wire.push(Buffer.from(line));
      d.kept += line.length;
    }
  }

  private async endData(line: Buffer): Promise<void> {
    const d = this.data!;
    const whole = d.kept < (this.server.opts.keepBytes ?? 1024 * 1024);
    this.session.messages.push({
      size: d.size,
      sha256: d.hash.digest('hex'),
      text: whole ? Buffer.concat(d.text).toString('utf8') : null,
      wire: whole ? Buffer.concat([...d.wire, line]).toString('utf8') : null,
    });
    this.data = null;
    this.mode = 'command';
    this.session.commands.push('.');
    this.session.reads.push(this.reads);
    await this.reply('.', '250 2.0.0 Ok: queued');
  }

  /** Runs the script for a command, or the default reply. */
  private async reply(command: string, fallback: string, step: ScriptStep = {}): Promise<string> {
    const custom = this.server.opts.respond?.(command, this.session);
    const s: ScriptStep = custom === undefined ? { reply: fallback, ...step } : typeof custom === 'string' ? { reply: custom } : custom;
    await this.act(s);
    return s.reply ?? '';
  }

  private ehlo(): string {
    const o = this.server.opts;
    const ext = [...(o.extensions ?? DEFAULT_EXTENSIONS)];
    if (o.starttls && !this.session.tls) ext.push('STARTTLS');
    if (o.auth) ext.push('AUTH PLAIN LOGIN');
    return [`${this.server.hostname} Hello`, ...ext].map((l, i, a) => `250${i === a.length - 1 ? ' ' : '-'}${l}`).join('\r\n');
  }

  private checkAuth(user: string, password: string): string {
    const a = this.server.opts.auth;
    if (a && a.user === user && a.password === password) {
      this.session.authUser = user;
      return '235 2.7.0 Authentication successful';
    }
    return '535 5.7.8 Authentication credentials invalid';
  }

  private async command(line: string): Promise<void> {
    const b64 = (s: string): string => Buffer.from(s, 'base64').toString('utf8');
    if (this.mode === 'auth-plain') {
      this.mode = 'command';
      const [, user, pass] = b64(line).split('\0');
      await this.reply(line, line === '*' ? '501 5.7.0 Cancelled' : this.checkAuth(user ?? '', pass ?? ''));
      return;
    }
    if (this.mode === 'auth-user') {
      this.authUser = b64(line);
      this.mode = line === '*' ? 'command' : 'auth-pass';
      await this.reply(line, line === '*' ? '501 5.7.0 Cancelled' : '334 UGFzc3dvcmQ6');
      return;
    }
    if (this.mode === 'auth-pass') {
      this.mode = 'command';
      await this.reply(line, line === '*' ? '501 5.7.0 Cancelled' : this.checkAuth(this.authUser, b64(line)));
      return;
    }
    const verb = line.split(' ')[0].toUpperCase();
    switch (verb) {
      case 'EHLO':
        this.accepted = 0;
        await this.reply(line, this.ehlo());
        return;
      case 'HELO':
        await this.reply(line, `250 ${this.server.hostname}`);
        return;
      case 'MAIL':
        this.accepted = 0;
        await this.reply(line, '250 2.1.0 Ok');
        return;
      case 'RCPT':
        if ((await this.reply(line, '250 2.1.5 Ok')).startsWith('2')) this.accepted++;
        return;
      case 'DATA': {
        const r = await this.reply(line, this.accepted ? '354 End data with <CR><LF>.<CR><LF>' : '554 5.5.1 Error: no valid recipients');
        if (r.startsWith('354')) {
          this.mode = 'data';
          this.data = { hash: createHash('sha256'), size: 0, text: [], wire: [], kept: 0 };
        }
        return;
      }
      case 'RSET':
      case 'NOOP':
        await this.reply(line, '250 2.0.0 Ok');
        return;
      case 'QUIT':
        await this.reply(line, '221 2.0.0 Bye', { close: true });
        return;
      case 'STARTTLS':
        if ((await this.reply(line, '220 2.0.0 Ready to start TLS')).startsWith('220')) await this.upgrade();
        return;
      case 'AUTH': {
        const [, mech, ir] = line.split(' ');
        if (mech?.toUpperCase() === 'PLAIN' && ir) {
          const [, user, pass] = b64(ir).split('\0');
          await this.reply(line, this.checkAuth(user ?? '', pass ?? ''));
        } else if (mech?.toUpperCase() === 'PLAIN') {
          this.mode = 'auth-plain';
          await this.reply(line, '334 ');
        } else if (mech?.toUpperCase() === 'LOGIN') {
          this.mode = 'auth-user';
          await this.reply(line, '334 VXNlcm5hbWU6');
        } else {
          await this.reply(line, '504 5.5.4 Unrecognized authentication type');
        }
        return;
      }
      default:
        await this.reply(line, '502 5.5.2 Error: command not recognized');
    }
  }

  private async upgrade(): Promise<void> {
    this.session.injected = this.buf.toString('latin1');
    this.buf = Buffer.alloc(0);
    const plain = this.socket;
    plain.removeAllListeners('data');
    const secure = new TLSSocket(plain, { isServer: true, secureContext: this.context! });
    await new Promise<void>((res) => {
      secure.once('secure', () => res());
      secure.once('error', () => res());
      secure.once('close', () => res());
    });
    this.socket = secure;
    this.session.tls = true;
    this.bind();
  }
}
