import { connect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

export interface ParsedReply {
  code: number;
  lines: string[];
  /** The whole reply as received, CRLFs included. */
  raw: string;
}

/**
 * A deliberately low-level SMTP client for tests: it writes exactly the bytes it is given and
 * parses replies, so tests can send broken, pipelined or hostile input.
 */
export class TestClient {
  private buf = '';
  private waiters: (() => void)[] = [];
  closed = false;
  socket: Socket | TLSSocket;

  private constructor(socket: Socket | TLSSocket) {
    this.socket = socket;
    this.bind(socket);
  }

  private bind(socket: Socket | TLSSocket): void {
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.buf += d;
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  static async connect(port: number, opts: { tls?: boolean; host?: string; localAddress?: string } = {}): Promise<TestClient> {
    const host = opts.host ?? '127.0.0.1';
    const socket = opts.tls
      ? tlsConnect({ host, port, rejectUnauthorized: false, servername: "localhost" })
      : connect({ host, port, localAddress: opts.localAddress });
    await new Promise<void>((res, rej) => {
      socket.once(opts.tls ? 'secureConnect' : 'connect', () => res());
      socket.once('error', rej);
    });
    return new TestClient(socket);
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Reads one complete reply (all its continuation lines). */
  async read(timeoutMs = 5000): Promise<ParsedReply> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = this.take();
      if (r) return r;
      if (this.closed) throw new Error(`connection closed; unread: ${JSON.stringify(this.buf)}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for a reply; unread: ${JSON.stringify(this.buf)}`);
      await new Promise<void>((res) => {
        const t = setTimeout(res, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          res();
        });
      });
    }
  }

  private take(): ParsedReply | null {
    let pos = 0;
    const lines: string[] = [];
    for (;;) {
      const end = this.buf.indexOf('\r\n', pos);
      if (end < 0) return null;
      const line = this.buf.slice(pos, end);
      lines.push(line);
      pos = end + 2;
      if (line[3] !== '-') {
        const raw = this.buf.slice(0, pos);
        this.buf = this.buf.slice(pos);
        return { code: Number(line.slice(0, 3)), lines, raw };
      }
    }
  }

  /** Sends one command line and reads its reply. */
  async cmd(line: string): Promise<ParsedReply> {
    this.write(`${line}\r\n`);
    return this.read();
  }

  /** Waits until the server closes the connection. */
  async waitClosed(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('server did not close the connection');
      await new Promise<void>((res) => {
        const t = setTimeout(res, 50);
        this.waiters.push(() => {
          clearTimeout(t);
          res();
        });
      });
    }
  }

  /** Upgrades after a 220 to STARTTLS. */
  async startTls(): Promise<void> {
    const plain = this.socket as Socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    const secure = tlsConnect({ socket: plain, rejectUnauthorized: false, servername: 'localhost' });
    await new Promise<void>((res, rej) => {
      secure.once('secureConnect', () => res());
      secure.once('error', rej);
    });
    this.socket = secure;
    this.bind(secure);
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Greeting, EHLO: the usual opening of a test dialogue. */
export async function openSession(port: number, helo = 'client.test'): Promise<TestClient> {
  const c = await TestClient.connect(port);
  const greeting = await c.read();
  if (greeting.code !== 220) throw new Error(`unexpected greeting ${greeting.raw}`);
  const ehlo = await c.cmd(`EHLO ${helo}`);
  if (ehlo.code !== 250) throw new Error(`EHLO failed: ${ehlo.raw}`);
  return c;
}

/** A small RFC 5322 message with CRLF line endings. */
export function message(subject = 'test', body = 'Hello.\r\n', extraHeaders = ''): string {
  return `From: sender@example.com\r\nTo: alice@localhost\r\nSubject: ${subject}\r\n${extraHeaders}\r\n${body}`;
}

/** Sends one whole transaction with DATA; returns the final reply. */
export async function sendMail(c: TestClient, from: string, to: string[], data: string): Promise<ParsedReply> {
  let r = await c.cmd(`MAIL FROM:<${from}>`);
  if (r.code !== 250) return r;
  for (const t of to) {
    r = await c.cmd(`RCPT TO:<${t}>`);
    if (r.code !== 250) return r;
  }
  r = await c.cmd('DATA');
  if (r.code !== 354) return r;
  const stuffed = data.replace(/^\./gm, '..');
  c.write(`${stuffed}${stuffed.endsWith('\r\n') ? '' : '\r\n'}.\r\n`);
  return c.read();
}
