import type { Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import type { ClientInfo, ServiceContext, SessionIO } from './context.js';
import { formatReply, type Reply } from './reply.js';
import { Session } from './session.js';
import { parseProxyHeader } from './proxy-protocol.js';
import { normalizeIp } from '../policy/cidr.js';
import { canonicalIp } from '../policy/own-addresses.js';
import { noteBytesRead } from '../util/young-gc.js';

const LF = 10;
const NEED_MORE = Symbol('need more input');
const PROXY_V2_MAX = 16 + 0xffff;
/**
 * Input held unread while a command is awaited (an AUTH failure delay, a hook, a commit): past
 * this, the socket stops being read and TCP pushes back, so a client cannot fill memory.
 */
const MAX_HELD_INPUT = 256 * 1024;
/**
 * Commands handled back to back before other connections get a turn: a hook's promise settles
 * as a microtask, so thousands of pipelined commands would otherwise run in one event-loop turn.
 */
const STEPS_PER_TURN = 64;

export function tlsDetails(s: TLSSocket): string {
  const c = s.getCipher();
  return `version=${s.getProtocol() ?? 'TLS'} cipher=${c?.standardName ?? c?.name ?? 'unknown'}`;
}

/**
 * Binds a Session to a socket: splits input into command lines or message bytes, batches
 * replies until the client's pipelined input is used up (RFC 2920), applies timeouts, and
 * swaps the socket for TLS on STARTTLS.
 */
export class Connection implements SessionIO {
  session!: Session;
  private socket: Socket;
  private buf: Buffer = Buffer.alloc(0);
  private off = 0;
  private busy = false;
  private out = '';
  private closing = false;
  private finished = false;
  private discardingLongLine = false;
  private paused = false;
  /** Reading stopped because too much input is held while the session is busy. */
  private throttled = false;
  private steps = 0;
  private phase: 'command' | 'data' = 'command';
  private proxyPending: boolean;
  private readonly onData = (chunk: Buffer): void => this.receive(chunk);
  private readonly ended: Promise<void>;
  private endResolve!: () => void;

  constructor(
    private readonly ctx: ServiceContext,
    socket: Socket,
    private readonly secureContext: SecureContext | null,
    private readonly onEnd: (c: Connection) => void,
  ) {
    this.socket = socket;
    this.ended = new Promise((res) => (this.endResolve = res));
    const ip = normalizeIp(socket.remoteAddress ?? '0.0.0.0');
    const client: ClientInfo = { ip, port: socket.remotePort ?? 0, serverIp: socket.localAddress ? canonicalIp(socket.localAddress) : undefined };
    if (socket instanceof TLSSocket) client.tls = tlsDetails(socket);
    this.proxyPending = ctx.service.proxyProtocol && ctx.proxyTrusted.has(ip);
    this.session = new Session(ctx, this, client);
    this.attach(socket);
    socket.setNoDelay(true);
    this.setPhase('command');
    if (!this.proxyPending) this.wait(this.session.greet());
    else this.flush();
  }

  get done(): Promise<void> {
    return this.ended;
  }

  private attach(socket: Socket): void {
    socket.on('data', this.onData);
    socket.on('timeout', () => {
      this.session.log.info({ phase: this.phase }, 'client timed out');
      this.session.timeout();
      this.flush();
    });
    socket.on('error', (err) => this.session.log.debug({ err: err.message }, 'socket error'));
    socket.on('close', () => this.finish('client closed the connection'));
  }

  private finish(why: string): void {
    if (this.finished) return;
    this.finished = true;
    this.closing = true;
    this.session.closed = true;
    void this.session.abort(why).finally(() => {
      this.endResolve();
      this.onEnd(this);
    });
  }

  // ---- SessionIO ---------------------------------------------------------------------

  send(r: Reply): void {
    this.out += formatReply(r);
    this.ctx.observer?.reply(this.session.id, r);
  }

  close(): void {
    this.flush();
    this.closing = true;
    // Plain TCP with every reply in the kernel's hands: closing now still sends them, then FIN,
    // as Postfix does after 221. Waiting for the client's own close instead costs a shutdown
    // request, a timer, and, from clients that reset (smtp-source), an error object per
    // connection. TLS says close_notify first.
    if (!(this.socket instanceof TLSSocket) && this.socket.writableLength === 0) {
      this.socket.destroy();
      return;
    }
    this.socket.end();
    // A client that never reads its replies must not pin the socket.
    setTimeout(() => this.socket.destroy(), 5000).unref();
  }

  /** Shutdown deadline: say 421 and drop whatever is in flight. */
  forceClose(): void {
    this.session.sayGoodbye();
    this.flush();
    this.socket.destroy();
  }

  pause(): void {
    this.paused = true;
    this.socket.pause();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.socket.resume();
    this.process();
  }

  setPhase(phase: 'command' | 'data'): void {
    this.phase = phase;
    const t = this.ctx.config.limits.timeouts;
    this.socket.setTimeout((phase === 'data' ? t.data : t.command) * 1000);
  }

  async startTls(): Promise<string> {
    this.flush();
    // RFC 3207 §4.2 / CVE-2011-0411: nothing the client sent before the handshake counts.
    this.buf = Buffer.alloc(0);
    this.off = 0;
    const raw = this.socket;
    raw.removeListener('data', this.onData);
    raw.removeAllListeners('timeout');
    raw.removeAllListeners('close');
    raw.removeAllListeners('error');
    const secure = new TLSSocket(raw, { isServer: true, secureContext: this.secureContext ?? undefined });
    this.socket = secure;
    // Whatever becomes of the handshake, the socket's end is the connection's end (and frees its slot).
    secure.once('close', () => this.finish('connection closed during the TLS handshake'));
    let timer: NodeJS.Timeout | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        secure.once('secure', resolve);
        secure.once('error', reject);
        secure.once('close', () => reject(new Error('closed during TLS handshake')));
        // A client that says STARTTLS and then nothing has the command timeout to start.
        timer = setTimeout(() => reject(new Error('TLS handshake timed out')), this.ctx.config.limits.timeouts.command * 1000);
      });
    } catch (err) {
      secure.on('error', () => undefined);
      secure.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
    }
    secure.removeAllListeners('error');
    secure.removeAllListeners('close');
    this.attach(secure);
    this.setPhase(this.phase);
    return tlsDetails(secure);
  }

  // ---- input -------------------------------------------------------------------------

  private receive(chunk: Buffer): void {
    noteBytesRead(chunk.length);
    if (this.closing) return;
    if (this.off >= this.buf.length) {
      this.buf = chunk;
      this.off = 0;
    } else {
      this.buf = Buffer.concat([this.buf.subarray(this.off), chunk]);
      this.off = 0;
    }
    if (this.busy && !this.throttled && this.buf.length - this.off > MAX_HELD_INPUT) {
      this.throttled = true;
      this.socket.pause();
    }
    this.process();
  }

  private flush(): void {
    if (this.out && !this.socket.destroyed && !this.socket.write(this.out) && !this.closing) {
      // A client that pipelines without reading its replies: stop reading until it catches up.
      this.pause();
      this.socket.once('drain', () => this.resume());
    }
    this.out = '';
  }

  /** Works through buffered input until it runs out or a command must be awaited. */
  private process(): void {
    if (this.busy) return;
    while (!this.closing && !this.paused && this.off < this.buf.length) {
      if (++this.steps > STEPS_PER_TURN) {
        this.steps = 0;
        return this.wait(new Promise<void>((res) => setImmediate(res)));
      }
      const r = this.step();
      if (r === NEED_MORE) break;
      if (r) return this.wait(r);
    }
    // Input used up (or we stopped): the batched replies can go out.
    this.flush();
    if (this.throttled && !this.paused) {
      this.throttled = false;
      this.socket.resume();
    }
  }

  /** Holds input until the session has finished `pending` (greeting, a command, a commit). */
  private wait(pending: Promise<void>): void {
    this.busy = true;
    pending.then(
      () => {
        this.busy = false;
        this.process();
      },
      (err: Error) => {
        this.busy = false;
        this.session.log.error({ err: err.message, stack: err.stack }, 'session error');
        this.send({ code: 421, enhanced: '4.3.0', lines: ['Local error, closing connection'] });
        this.close();
      },
    );
  }

  /** Handles one unit of input; a promise when the session must finish first. */
  private step(): Promise<void> | void | typeof NEED_MORE {
    const s = this.session;
    const buf = this.buf;
    if (this.proxyPending) return this.readProxy();
    if (s.mode === 'data') {
      const end = s.data(buf, this.off);
      if (end < 0) {
        this.off = buf.length;
        return;
      }
      this.off = end;
      return s.endData();
    }
    if (s.mode === 'bdat') {
      const n = Math.min(s.bdatNeeded, buf.length - this.off);
      s.bdat(buf, this.off, this.off + n);
      this.off += n;
      if (s.bdatNeeded === 0) return s.endBdatChunk();
      return;
    }
    const lf = buf.indexOf(LF, this.off);
    const max = s.maxLineLength + 2;
    if (lf < 0) {
      if (buf.length - this.off > max) {
        if (!this.discardingLongLine) s.lineTooLong();
        this.discardingLongLine = true;
        this.off = buf.length;
        return;
      }
      if (this.off > 0) {
        this.buf = buf.subarray(this.off);
        this.off = 0;
      }
      return NEED_MORE;
    }
    const start = this.off;
    this.off = lf + 1;
    if (this.discardingLongLine) {
      this.discardingLongLine = false;
      return;
    }
    const end = lf > start && buf[lf - 1] === 13 ? lf - 1 : lf;
    // The limit counts the octets of the line without its CRLF, as for message lines.
    if (end - start > s.maxLineLength) return s.lineTooLong();
    const line = buf.toString('utf8', start, end);
    this.ctx.observer?.command(s.id, line);
    return s.command(line);
  }

  private readProxy(): Promise<void> | void | typeof NEED_MORE {
    const r = parseProxyHeader(this.buf.subarray(this.off));
    if (r.state === 'need-more') {
      // The parser bounds v1 at 107 octets; v2 carries its length (at most 16 + 65535, TLVs included).
      if (this.buf.length - this.off > PROXY_V2_MAX) return this.proxyFailed('PROXY header too long');
      if (this.off > 0) {
        this.buf = this.buf.subarray(this.off);
        this.off = 0;
      }
      return NEED_MORE;
    }
    if (r.state === 'error') return this.proxyFailed(r.message);
    this.off += r.consumed;
    this.proxyPending = false;
    if (r.info) {
      this.session.client.ip = normalizeIp(r.info.ip);
      this.session.client.port = r.info.port;
      this.session.refreshClient();
    }
    this.session.log.info({ ip: this.session.client.ip, port: this.session.client.port }, 'connection via PROXY');
    return this.session.greet();
  }

  private proxyFailed(message: string): void {
    this.session.log.warn({ err: message }, 'PROXY protocol error');
    this.closing = true;
    this.socket.destroy();
  }
}


