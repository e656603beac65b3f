import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import Fastify, { LogController, type FastifyError, type FastifyInstance } from 'fastify';
import fastifyCookie from '@fastify/cookie';
import { AdminAuth, registerAuth } from './auth.js';
import type { AdminContext } from './context.js';
import { scriptRoutes } from './routes-scripts.js';
import { queueRoutes } from './routes-queue.js';
import { liveRoutes } from './routes-live.js';
import { consoleRoutes, DEFAULT_CONSOLE_DIR } from './console-assets.js';
import { ScriptFileError } from '../script-files.js';

const BODY_LIMIT = 4 * 1024 * 1024;

function readKeyPair(tls: { cert: string; key: string }): { cert: Buffer; key: Buffer } {
  try {
    return { cert: readFileSync(tls.cert), key: readFileSync(tls.key) };
  } catch (err) {
    throw new Error(`admin.tls: cannot read the certificate or key: ${(err as Error).message}`);
  }
}

const isLoopback = (ip: string): boolean => ip === '::1' || ip.startsWith('127.');

/**
 * The admin console's HTTP server (fastify): the browser console at `/` (console-assets.ts),
 * JSON API under /api, Prometheus metrics at /metrics, optional TLS, authentication by login
 * session or bearer token (auth.ts).
 */
export class AdminHttp {
  private readonly app: FastifyInstance;
  private readonly auth: AdminAuth;
  private live: { closeStreams(): void } | null = null;

  constructor(private readonly ctx: AdminContext) {
    const a = ctx.admin;
    const https = a.tls ? readKeyPair(a.tls) : null;
    this.app = Fastify({
      ...(https ? { https } : {}),
      loggerInstance: ctx.log,
      logController: new LogController({ disableRequestLogging: true }),
      bodyLimit: BODY_LIMIT,
      forceCloseConnections: true,
      // A key the schema does not know is an error (400), not silently dropped.
      ajv: { customOptions: { removeAdditional: false } },
    }) as unknown as FastifyInstance;
    this.auth = new AdminAuth(a, !!https, ctx.log);
  }

  /** Plugins, the auth hook and the routes, in this order (the cookie parser runs first). */
  private async setup(): Promise<void> {
    const { app, ctx } = this;
    await app.register(fastifyCookie);
    // JSON only: a plain-text body (what a cross-site form can send) is 415.
    app.removeContentTypeParser('text/plain');
    app.setErrorHandler((err: FastifyError, req, reply) => {
      const status = err instanceof ScriptFileError ? err.status : (err.statusCode ?? 500);
      if (status >= 500) ctx.log.error({ err: err.message, stack: err.stack, url: req.url }, 'admin API error');
      void reply.code(status).send({ error: status >= 500 ? `internal error: ${err.message}` : err.message });
    });
    app.setNotFoundHandler((req, reply) => {
      void reply.code(404).send({ error: `no route ${req.method} ${req.url.split('?')[0]}` });
    });
    app.addHook('onSend', async (req, reply) => {
      void reply.header('x-content-type-options', 'nosniff').header('x-frame-options', 'DENY').header('referrer-policy', 'same-origin');
      // API answers are per user and change all the time: never kept by a cache.
      if (req.url.startsWith('/api/') && !reply.hasHeader('cache-control')) void reply.header('cache-control', 'no-store');
    });
    registerAuth(app, this.auth, new Set(ctx.admin.metricsWithoutAuth ? ['/metrics'] : []));
    consoleRoutes(app, ctx.consoleDir ?? DEFAULT_CONSOLE_DIR);
    scriptRoutes(app, ctx);
    queueRoutes(app, ctx);
    this.live = liveRoutes(app, ctx);
    app.get('/metrics', async (_req, reply) => {
      const text = await ctx.metrics.metrics();
      return reply.type(ctx.metrics.contentType).send(text);
    });
  }

  async listen(): Promise<{ address: string; port: number }> {
    const a = this.ctx.admin;
    await this.auth.init();
    await this.setup();
    await this.app.listen({ host: a.listen, port: a.port });
    const addr = this.app.server.address();
    if (!addr || typeof addr === 'string') throw new Error(`admin API: no address after listening on ${a.listen}:${a.port}`);
    if (!a.tls && isIP(a.listen) && !isLoopback(a.listen)) {
      this.ctx.log.warn({ listen: a.listen }, 'admin API without TLS on a non-loopback address: passwords and session cookies travel in clear');
    }
    return { address: addr.address, port: addr.port };
  }

  async close(): Promise<void> {
    this.live?.closeStreams();
    await this.app.close();
  }
}
