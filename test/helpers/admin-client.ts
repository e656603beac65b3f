import { hashPassword } from '../../src/policy/password.js';
import type { ConfigInput } from '../../src/config/schema.js';

export const ADMIN_USER = 'admin';
export const ADMIN_PASSWORD = 'correct horse battery staple';
export const ADMIN_TOKEN = 'ci-token-0123456789abcdef';

let hash: Promise<string> | null = null;

/** JSON answers, loosely typed: the tests check their shape. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = any;

/** An `admin` config section on an ephemeral port: one user, one token, 3 failed logins a minute. */
export async function adminSection(extra: Partial<NonNullable<ConfigInput['admin']>> = {}): Promise<NonNullable<ConfigInput['admin']>> {
  hash ??= hashPassword(ADMIN_PASSWORD);
  return {
    port: 0,
    users: [{ name: ADMIN_USER, password: await hash }],
    tokens: [{ name: 'ci', token: ADMIN_TOKEN }],
    login: { attempts: 3, windowSeconds: 60 },
    ...extra,
  };
}

export interface ApiResponse<T = Json> {
  status: number;
  headers: Headers;
  body: T;
}

export interface RequestOptions {
  /** Send the bearer token (default: only when the client was made with one). */
  token?: string | null;
  /** Send the session's CSRF token on a cookie session (default true). */
  csrf?: boolean | string;
  headers?: Record<string, string>;
  /** Raw body (no JSON encoding). */
  raw?: string;
}

/**
 * A small HTTP client for the admin API with a cookie jar: `login` keeps the session cookie
 * and CSRF token; `token` sends a bearer token instead.
 */
export class AdminClient {
  readonly cookies = new Map<string, string>();
  csrfToken: string | null = null;

  constructor(
    readonly base: string,
    readonly token: string | null = null,
  ) {}

  static forPort(port: number, token: string | null = null): AdminClient {
    return new AdminClient(`http://127.0.0.1:${port}`, token);
  }

  async login(user = ADMIN_USER, password = ADMIN_PASSWORD): Promise<ApiResponse> {
    const r = await this.request('POST', '/api/login', { user, password }, { token: null, csrf: false });
    if (r.status === 200) this.csrfToken = r.body.csrfToken;
    return r;
  }

  async request<T = Json>(method: string, path: string, body?: unknown, opts: RequestOptions = {}): Promise<ApiResponse<T>> {
    const headers: Record<string, string> = { ...opts.headers };
    const token = opts.token === undefined ? this.token : opts.token;
    if (token) headers.authorization = `Bearer ${token}`;
    if (this.cookies.size) headers.cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    const csrf = opts.csrf ?? true;
    if (csrf && this.csrfToken) headers['x-csrf-token'] = typeof csrf === 'string' ? csrf : this.csrfToken;
    let payload: string | undefined = opts.raw;
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    const res = await fetch(this.base + path, { method, headers, body: payload });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      if (value === '' || /Max-Age=0|Expires=Thu, 01 Jan 1970/i.test(c)) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    const text = await res.text();
    let parsed: unknown = text;
    if ((res.headers.get('content-type') ?? '').includes('application/json')) parsed = text ? JSON.parse(text) : null;
    return { status: res.status, headers: res.headers, body: parsed as T };
  }

  get<T = Json>(path: string, opts?: RequestOptions): Promise<ApiResponse<T>> {
    return this.request<T>('GET', path, undefined, opts);
  }

  post<T = Json>(path: string, body?: unknown, opts?: RequestOptions): Promise<ApiResponse<T>> {
    return this.request<T>('POST', path, body, opts);
  }

  put<T = Json>(path: string, body?: unknown, opts?: RequestOptions): Promise<ApiResponse<T>> {
    return this.request<T>('PUT', path, body, opts);
  }

  delete<T = Json>(path: string, opts?: RequestOptions): Promise<ApiResponse<T>> {
    return this.request<T>('DELETE', path, undefined, opts);
  }
}

export interface SseEvent {
  id?: string;
  event: string;
  data: Json;
}

/** Reads a server-sent event stream; `next` waits for an event matching a predicate. */
export class SseReader {
  readonly events: SseEvent[] = [];
  private buf = '';
  private waiters: (() => void)[] = [];
  private readonly abort = new AbortController();
  status = 0;
  contentType = '';
  closed = false;

  static async open(url: string, headers: Record<string, string>): Promise<SseReader> {
    const r = new SseReader();
    const res = await fetch(url, { headers, signal: r.abort.signal });
    r.status = res.status;
    r.contentType = res.headers.get('content-type') ?? '';
    if (res.status !== 200 || !res.body) {
      await res.body?.cancel();
      r.closed = true;
      return r;
    }
    void r.pump(res.body.getReader());
    return r;
  }

  private async pump(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<void> {
    const dec = new TextDecoder();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        this.buf += dec.decode(value, { stream: true });
        let sep: number;
        while ((sep = this.buf.indexOf('\n\n')) >= 0) {
          const block = this.buf.slice(0, sep);
          this.buf = this.buf.slice(sep + 2);
          const ev: SseEvent = { event: 'message', data: null };
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) continue;
            const c = line.indexOf(':');
            const field = c < 0 ? line : line.slice(0, c);
            const value = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
            if (field === 'event') ev.event = value;
            else if (field === 'id') ev.id = value;
            else if (field === 'data') data.push(value);
          }
          if (!data.length) continue;
          ev.data = JSON.parse(data.join('\n'));
          this.events.push(ev);
        }
        this.wake();
      }
    } catch {
      /* aborted */
    }
    this.closed = true;
    this.wake();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  async next(pred: (e: SseEvent) => boolean, timeoutMs = 5000): Promise<SseEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.events.find(pred);
      if (hit) return hit;
      if (this.closed) throw new Error(`stream closed; events: ${JSON.stringify(this.events.map((e) => e.data))}`);
      if (Date.now() > deadline) throw new Error(`no matching event; got: ${JSON.stringify(this.events.map((e) => e.data))}`);
      await new Promise<void>((res) => {
        const t = setTimeout(res, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          res();
        });
      });
    }
  }

  close(): void {
    this.abort.abort();
  }
}
