import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, createSecureContext, type SecureContext } from 'node:tls';
import { readFileSync } from 'node:fs';
import type { ServiceContext } from './context.js';
import { Connection } from './connection.js';
import { formatReply, reply } from './reply.js';
import { normalizeIp } from '../policy/cidr.js';

/** Counts connections in total and per client address across all services. */
export class ConnectionLimiter {
  total = 0;
  private readonly perIp = new Map<string, number>();

  constructor(
    private readonly maxTotal: number,
    private readonly maxPerIp: number,
  ) {}

  /** Returns a refusal text, or null when the connection may proceed (and is counted). */
  admit(ip: string): string | null {
    if (this.total >= this.maxTotal) return 'Too many connections, try again later';
    const n = this.perIp.get(ip) ?? 0;
    if (n >= this.maxPerIp) return 'Too many connections from your address, try again later';
    this.total++;
    this.perIp.set(ip, n + 1);
    return null;
  }

  release(ip: string): void {
    this.total--;
    const n = (this.perIp.get(ip) ?? 1) - 1;
    if (n <= 0) this.perIp.delete(ip);
    else this.perIp.set(ip, n);
  }
}

/** One listening service (port 25, 587, 465 ...): accepts sockets and runs a Connection each. */
export class Listener {
  readonly connections = new Set<Connection>();
  private server: Server | null = null;
  private readonly secureContext: SecureContext | null;
  private readonly keyPair: { cert: Buffer; key: Buffer } | null;

  constructor(
    private readonly ctx: ServiceContext,
    private readonly limiter: ConnectionLimiter,
  ) {
    const s = ctx.service;
    this.keyPair = s.cert && s.key ? { cert: readFileSync(s.cert), key: readFileSync(s.key) } : null;
    this.secureContext = this.keyPair ? createSecureContext(this.keyPair) : null;
  }

  async listen(): Promise<{ address: string; port: number }> {
    const s = this.ctx.service;
    const server =
      s.tls === 'implicit'
        ? createTlsServer({ ...this.keyPair! }, (sock) => this.accept(sock))
        : createNetServer((sock) => this.accept(sock));
    if (s.tls === 'implicit') server.on('tlsClientError', (err) => this.ctx.log.debug({ err: err.message }, 'TLS handshake failed'));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: s.listen, port: s.port, backlog: 1024 }, () => {
        server.removeListener('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.ctx.log.error({ err: err.message, service: s.name }, 'listener error'));
    const addr = server.address();
    if (!addr || typeof addr === 'string') throw new Error(`service ${s.name}: no address after listen`);
    return { address: addr.address, port: addr.port };
  }

  private accept(socket: Socket): void {
    const ip = normalizeIp(socket.remoteAddress ?? '');
    const refusal = this.limiter.admit(ip);
    if (refusal) {
      this.ctx.log.warn({ ip, service: this.ctx.service.name }, refusal);
      socket.on('error', () => undefined);
      socket.end(formatReply(reply(421, '4.7.0', `${this.ctx.config.hostname} ${refusal}`)));
      setTimeout(() => socket.destroy(), 2000).unref();
      return;
    }
    const conn = new Connection(this.ctx, socket, this.secureContext, (c) => {
      this.connections.delete(c);
      this.limiter.release(ip);
      c.session.log.info({ ip: c.session.client.ip }, 'disconnected');
      this.ctx.observer?.closed(c.session.id);
    });
    this.connections.add(conn);
    conn.session.log.info({ ip, port: socket.remotePort, service: this.ctx.service.name }, 'connected');
    this.ctx.observer?.opened(conn.session.id, { ip, port: socket.remotePort ?? 0, service: this.ctx.service.name });
  }

  /** Stops accepting; sessions in flight carry on (close's callback would wait for them). */
  stopAccepting(): void {
    this.server?.close();
    this.server = null;
  }
}
