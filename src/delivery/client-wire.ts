import { connect as netConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { SmtpClientError, type ClientErrorKind } from './client-error.js';
import { ReplyParser, type ClientReply } from './client-reply.js';

export interface WireTls {
  rejectUnauthorized: boolean;
  /** SNI and certificate name; defaults to the host when it is a name, none for an IP. */
  servername?: string;
  /** Trusted CA certificates (PEM) instead of the system's. */
  ca?: string | Buffer | (string | Buffer)[];
}

export interface WireOpen {
  host: string;
  port: number;
  implicitTls: boolean;
  tls: WireTls;
  localAddress?: string;
  connectTimeoutMs: number;
}

export interface WireTlsInfo {
  protocol: string | null;
  cipher: string;
  authorized: boolean;
  authorizationError?: string;
}

interface Broken {
  kind: ClientErrorKind;
  detail: string;
  cause?: unknown;
}

export const seconds = (ms: number): string => `${Math.round(ms / 100) / 10} s`;

function tlsOptions(host: string, tls: WireTls): ConnectionOptions {
  const servername = tls.servername ?? (isIP(host) ? undefined : host);
  return { servername, rejectUnauthorized: tls.rejectUnauthorized, ca: tls.ca };
}

/**
 * One SMTP client connection at the byte level: replies parsed as they arrive and queued in
 * order (so pipelined replies and a 421 sent before closing are never lost), reads and
 * data-block writes under deadlines, and the STARTTLS upgrade. Every failure names the host
 * and the command it happened on.
 */
export class ClientWire {
  private replies: ClientReply[] = [];
  private parser = new ReplyParser();
  private wakers: (() => void)[] = [];
  private broken: Broken | null = null;
  private lastError: Error | null = null;
  private closeListeners: (() => void)[] = [];
  private closedFlag = false;
  /** `host:port`, then with the greeting's name; used in every error. */
  label: string;

  private constructor(private socket: Socket | TLSSocket, label: string) {
    this.label = label;
    socket.setNoDelay(true);
    this.bind(socket);
  }

  /** TCP connect (and the TLS handshake for implicit TLS) within the connect timeout. */
  static open(o: WireOpen): Promise<ClientWire> {
    const label = `${o.host}:${o.port}`;
    return new Promise((resolve, reject) => {
      const tcp = netConnect({ host: o.host, port: o.port, localAddress: o.localAddress });
      let socket: Socket | TLSSocket = tcp;
      let tcpUp = false;
      const fail = (kind: ClientErrorKind, detail: string, cause?: unknown): void => {
        clearTimeout(timer);
        socket.destroy();
        tcp.destroy();
        reject(new SmtpClientError(kind, label, null, detail, undefined, { cause }));
      };
      const timer = setTimeout(() => fail('timeout', `connect timed out after ${seconds(o.connectTimeoutMs)}`), o.connectTimeoutMs);
      const onError = (err: Error): void => fail(tcpUp ? 'tls' : 'network', `${tcpUp ? 'TLS handshake' : 'connect'} failed: ${err.message}`, err);
      const ready = (): void => {
        clearTimeout(timer);
        tcp.removeListener('error', onError);
        socket.removeListener('error', onError);
        resolve(new ClientWire(socket, label));
      };
      tcp.once('error', onError);
      tcp.once('connect', () => {
        tcpUp = true;
        if (!o.implicitTls) return ready();
        socket = tlsConnect({ socket: tcp, ...tlsOptions(o.host, o.tls) });
        socket.once('error', onError);
        socket.once('secureConnect', ready);
      });
    });
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.broken) return;
    try {
      const got = this.parser.push(chunk);
      if (got.length) this.replies.push(...got);
    } catch (err) {
      this.kill('protocol', (err as Error).message);
    }
    this.wake();
  };

  private readonly onError = (err: Error): void => {
    this.lastError = err;
  };

  private readonly onClose = (): void => {
    this.closedFlag = true;
    if (!this.broken) {
      const why = this.lastError ? `connection failed: ${this.lastError.message}` : 'connection closed by the remote';
      this.broken = { kind: 'network', detail: why, cause: this.lastError ?? undefined };
    }
    this.wake();
    const listeners = this.closeListeners;
    this.closeListeners = [];
    for (const cb of listeners) cb();
  };

  private readonly onDrain = (): void => this.wake();

  private bind(s: Socket | TLSSocket): void {
    s.on('data', this.onData);
    s.on('error', this.onError);
    s.on('close', this.onClose);
    s.on('drain', this.onDrain);
  }

  private unbind(s: Socket | TLSSocket): void {
    s.removeListener('data', this.onData);
    s.removeListener('error', this.onError);
    s.removeListener('close', this.onClose);
    s.removeListener('drain', this.onDrain);
  }

  private wake(): void {
    const w = this.wakers;
    this.wakers = [];
    for (const f of w) f();
  }

  /** Waits for data, drain or close; false when the deadline passed first. */
  private wait(deadline: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()));
      this.wakers.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  private error(b: Broken, command: string | null): SmtpClientError {
    return new SmtpClientError(b.kind, this.label, command, b.detail, undefined, { cause: b.cause });
  }

  /** Marks the connection unusable for this reason and drops it. */
  kill(kind: ClientErrorKind, detail: string, cause?: unknown): void {
    if (!this.broken) this.broken = { kind, detail, cause };
    this.socket.destroy();
  }

  get closed(): boolean {
    return this.closedFlag || this.broken !== null;
  }

  onClosed(cb: () => void): void {
    if (this.closedFlag) queueMicrotask(cb);
    else this.closeListeners.push(cb);
  }

  /** A reply has arrived that nobody has read yet. */
  get replyWaiting(): boolean {
    return this.replies.length > 0;
  }

  get tls(): WireTlsInfo | undefined {
    const s = this.socket as TLSSocket;
    if (!s.encrypted) return undefined;
    return {
      protocol: s.getProtocol(),
      cipher: s.getCipher()?.name ?? '',
      authorized: s.authorized,
      authorizationError: s.authorizationError ? String(s.authorizationError) : undefined,
    };
  }

  /** Writes bytes; false when the socket's buffer is full (then `drain` before writing more). */
  write(data: string | Buffer, command: string | null): boolean {
    if (this.broken) throw this.error(this.broken, command);
    return this.socket.write(data);
  }

  /** The next reply, waiting at most `timeoutMs`; a timeout drops the connection. */
  async read(timeoutMs: number, command: string | null): Promise<ClientReply> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = this.replies.shift();
      if (r) return r;
      if (this.broken) throw this.error(this.broken, command);
      if (!(await this.wait(deadline)) && !this.replies.length && !this.broken) {
        this.kill('timeout', `no reply within ${seconds(timeoutMs)}`);
      }
    }
  }

  /** Waits until the socket takes more data (the RFC 5321 data-block timeout). */
  async drain(timeoutMs: number, command: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.broken) throw this.error(this.broken, command);
      if (!this.socket.writableNeedDrain) return;
      if (!(await this.wait(deadline)) && this.socket.writableNeedDrain && !this.broken) {
        this.kill('timeout', `message data not taken within ${seconds(timeoutMs)}`);
      }
    }
  }

  /**
   * STARTTLS (RFC 3207): right after the server's 220. Anything the server sent beyond that
   * reply came before the handshake and may be an injection, so it fails the connection.
   */
  async upgrade(host: string, tls: WireTls, timeoutMs: number, command: string): Promise<void> {
    if (this.broken) throw this.error(this.broken, command);
    if (this.replies.length || this.parser.pending) {
      this.kill('protocol', 'data received after the STARTTLS reply, before the TLS handshake');
      throw this.error(this.broken!, command);
    }
    const plain = this.socket;
    this.unbind(plain);
    const secure = tlsConnect({ socket: plain, ...tlsOptions(host, tls) });
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`handshake not done within ${seconds(timeoutMs)}`)), timeoutMs);
        secure.once('secureConnect', () => {
          clearTimeout(timer);
          resolve();
        });
        secure.once('error', (err) => {
          clearTimeout(timer);
          reject(err);
        });
      });
    } catch (err) {
      this.socket = secure;
      this.bind(secure);
      this.kill('tls', `TLS handshake failed: ${(err as Error).message}`, err);
      throw this.error(this.broken!, command);
    }
    this.socket = secure;
    this.parser = new ReplyParser();
    this.bind(secure);
  }

  /** Half-closes after QUIT and drops the socket shortly after. */
  end(): void {
    if (!this.broken) this.broken = { kind: 'network', detail: 'connection closed' };
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  destroy(): void {
    if (!this.broken) this.broken = { kind: 'network', detail: 'connection closed' };
    this.socket.destroy();
  }
}
