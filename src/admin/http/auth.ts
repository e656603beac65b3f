import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { AdminConfig } from '../../config/schema.js';
import { resolveSecret } from '../../config/load.js';
import { hashPassword, verifyPassword } from '../../policy/password.js';

export const SESSION_COOKIE = 'moonpost_session';
export const CSRF_COOKIE = 'moonpost_csrf';
export const CSRF_HEADER = 'x-csrf-token';

/** Who is asking: a console login (cookie) or a script with a bearer token. */
export interface Principal {
  user: string;
  via: 'session' | 'token';
  session?: AdminSession;
}

interface AdminSession {
  id: string;
  user: string;
  csrf: string;
  expires: number;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
  interface FastifyContextConfig {
    /** Reachable without a login or token. */
    public?: boolean;
  }
}

const MAX_SESSIONS = 1000;
const MAX_TRACKED_IPS = 10_000;
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
const sha256 = (s: string): Buffer => createHash('sha256').update(s).digest();

/** Equal strings in time that does not depend on where they differ. */
function sameSecret(a: string, b: string): boolean {
  return timingSafeEqual(sha256(a), sha256(b));
}

/** Failed logins per client address in a sliding window; at the limit, 429 until they age out. */
export class LoginLimiter {
  private readonly failures = new Map<string, number[]>();

  constructor(
    private readonly attempts: number,
    private readonly windowMs: number,
  ) {}

  private recent(ip: string, now: number): number[] {
    const list = (this.failures.get(ip) ?? []).filter((t) => now - t < this.windowMs);
    if (list.length) this.failures.set(ip, list);
    else this.failures.delete(ip);
    return list;
  }

  /** Seconds to wait before trying again, or 0 when a login may be tried now. */
  retryAfter(ip: string, now = Date.now()): number {
    const list = this.recent(ip, now);
    if (list.length < this.attempts) return 0;
    return Math.max(1, Math.ceil((list[list.length - this.attempts] + this.windowMs - now) / 1000));
  }

  fail(ip: string, now = Date.now()): void {
    const list = this.recent(ip, now);
    list.push(now);
    // Re-inserted last: the map's first entries are the stalest addresses.
    this.failures.delete(ip);
    this.failures.set(ip, list);
    while (this.failures.size > MAX_TRACKED_IPS) this.failures.delete(this.failures.keys().next().value!);
  }

  succeed(ip: string): void {
    this.failures.delete(ip);
  }
}

/**
 * Authentication of the admin API:
 * - console users log in with name and password (scrypt hashes from the config) and get a
 *   random session id in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` over TLS);
 * - a cookie session must send its CSRF token (given at login, also in a readable cookie) in
 *   `X-CSRF-Token` on every state-changing request (POST, PUT, DELETE, PATCH);
 * - scripts send `Authorization: Bearer <token>` (a configured token); no CSRF token needed,
 *   since browsers never add that header on their own;
 * - failed logins are limited per client address (429 with Retry-After).
 */
export class AdminAuth {
  private readonly sessions = new Map<string, AdminSession>();
  private readonly users: Map<string, string>;
  private readonly tokens: { name: string; hash: Buffer }[];
  private readonly limiter: LoginLimiter;
  /** Verified against for unknown users, so a login costs the same whether the user exists. */
  private dummyHash = '';

  constructor(
    private readonly config: AdminConfig,
    private readonly secure: boolean,
    private readonly log: Logger,
  ) {
    this.users = new Map(config.users.map((u) => [u.name, resolveSecret(u.password, 'config', `admin.users.${u.name}.password`)]));
    this.tokens = config.tokens.map((t) => ({ name: t.name, hash: sha256(resolveSecret(t.token, 'config', `admin.tokens.${t.name}.token`)) }));
    this.limiter = new LoginLimiter(config.login.attempts, config.login.windowSeconds * 1000);
  }

  async init(): Promise<void> {
    this.dummyHash = await hashPassword(randomBytes(16).toString('hex'));
  }

  private byToken(token: string): string | null {
    const h = sha256(token);
    let found: string | null = null;
    // Every token is compared, so the time does not tell which one (or whether any) matched.
    for (const t of this.tokens) if (timingSafeEqual(h, t.hash) && !found) found = t.name;
    return found;
  }

  private bySession(id: string | undefined): AdminSession | null {
    if (!id) return null;
    const s = this.sessions.get(id);
    if (!s) return null;
    if (s.expires <= Date.now()) {
      this.sessions.delete(id);
      return null;
    }
    return s;
  }

  /** The onRequest check: sets `request.principal`, or says why not (401/403). */
  check(req: FastifyRequest): { status: 401 | 403; error: string } | null {
    const header = req.headers.authorization;
    if (header !== undefined) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
      const name = m ? this.byToken(m[1]) : null;
      if (!name) return { status: 401, error: 'invalid bearer token' };
      req.principal = { user: `token:${name}`, via: 'token' };
      return null;
    }
    const session = this.bySession(req.cookies[SESSION_COOKIE]);
    if (!session) return { status: 401, error: 'login or bearer token required' };
    if (!SAFE_METHODS.has(req.method)) {
      const sent = req.headers[CSRF_HEADER];
      if (typeof sent !== 'string' || !sameSecret(sent, session.csrf)) return { status: 403, error: `missing or wrong ${CSRF_HEADER} header` };
    }
    req.principal = { user: session.user, via: 'session', session };
    return null;
  }

  /** POST /api/login: a session for a right name and password, unless the address is over its limit. */
  async login(req: FastifyRequest<{ Body: { user: string; password: string } }>, reply: FastifyReply): Promise<unknown> {
    const ip = req.ip;
    const wait = this.limiter.retryAfter(ip);
    if (wait) {
      this.log.warn({ ip }, 'admin login refused: too many failures');
      return reply.code(429).header('retry-after', String(wait)).send({ error: `too many failed logins; try again in ${wait} s` });
    }
    const { user, password } = req.body;
    const hash = this.users.get(user);
    const ok = await verifyPassword(password, hash ?? this.dummyHash).catch(() => false);
    if (!hash || !ok) {
      this.limiter.fail(ip);
      this.log.warn({ ip, user }, 'admin login failed');
      return reply.code(401).send({ error: 'wrong user name or password' });
    }
    this.limiter.succeed(ip);
    const session: AdminSession = {
      id: randomBytes(32).toString('base64url'),
      user,
      csrf: randomBytes(24).toString('base64url'),
      expires: Date.now() + this.config.sessionMinutes * 60_000,
    };
    this.sessions.set(session.id, session);
    while (this.sessions.size > MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value!);
    this.log.info({ ip, user }, 'admin login');
    const maxAge = this.config.sessionMinutes * 60;
    void reply.setCookie(SESSION_COOKIE, session.id, { path: '/', httpOnly: true, sameSite: 'strict', secure: this.secure, maxAge });
    void reply.setCookie(CSRF_COOKIE, session.csrf, { path: '/', httpOnly: false, sameSite: 'strict', secure: this.secure, maxAge });
    return { user, csrfToken: session.csrf, expires: new Date(session.expires).toISOString() };
  }

  logout(req: FastifyRequest, reply: FastifyReply): unknown {
    const s = req.principal?.session;
    if (s) this.sessions.delete(s.id);
    void reply.clearCookie(SESSION_COOKIE, { path: '/' });
    void reply.clearCookie(CSRF_COOKIE, { path: '/' });
    return { ok: true };
  }

  whoami(req: FastifyRequest): unknown {
    const p = req.principal!;
    return { user: p.user, via: p.via, csrfToken: p.session?.csrf, expires: p.session ? new Date(p.session.expires).toISOString() : undefined };
  }
}

/** The auth hook on every request and the login, logout and session routes. */
export function registerAuth(app: FastifyInstance, auth: AdminAuth, publicPaths: Set<string>): void {
  app.addHook('onRequest', async (req, reply) => {
    if (req.routeOptions.config?.public === true || publicPaths.has(req.routeOptions.url ?? '')) return;
    const denied = auth.check(req);
    if (!denied) return;
    if (denied.status === 401) void reply.header('www-authenticate', 'Bearer realm="moonpost"');
    return reply.code(denied.status).send({ error: denied.error });
  });
  app.post<{ Body: { user: string; password: string } }>(
    '/api/login',
    {
      config: { public: true },
      schema: {
        body: {
          type: 'object',
          required: ['user', 'password'],
          additionalProperties: false,
          properties: { user: { type: 'string', minLength: 1, maxLength: 200 }, password: { type: 'string', minLength: 1, maxLength: 1000 } },
        },
      },
    },
    (req, reply) => auth.login(req, reply),
  );
  app.post('/api/logout', (req, reply) => auth.logout(req, reply));
  app.get('/api/session', (req) => auth.whoami(req));
}
