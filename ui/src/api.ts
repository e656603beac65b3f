/** The JSON API of the same origin, with the session's CSRF token on every state change. */

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly body: unknown,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

let csrfToken: string | null = null;
let onUnauthorized: () => void = () => undefined;

export function setCsrf(token: string | null): void {
  csrfToken = token;
}

/** Called when the session is gone (401 on a request made while logged in). */
export function whenUnauthorized(fn: () => void): void {
  onUnauthorized = fn;
}

export interface Answer<T> {
  status: number;
  body: T;
}

/**
 * One request. Answers with a status in `accept` (besides 2xx) are returned, not thrown,
 * for routes whose refusals the page shows in place (a save that does not compile: 422).
 */
export async function request<T>(method: string, path: string, body?: unknown, accept: number[] = []): Promise<Answer<T>> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && csrfToken) headers['x-csrf-token'] = csrfToken;
  let res: Response;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin' });
  } catch (err) {
    throw new ApiError(0, `the server did not answer (${(err as Error).message})`, null);
  }
  const text = await res.text();
  let parsed: unknown = text;
  if ((res.headers.get('content-type') ?? '').includes('application/json') && text) parsed = JSON.parse(text);
  if (res.ok || accept.includes(res.status)) return { status: res.status, body: parsed as T };
  const message = typeof parsed === 'object' && parsed && 'error' in parsed ? String((parsed as { error: unknown }).error) : `${res.status} ${res.statusText}`;
  if (res.status === 401 && path !== '/api/login' && path !== '/api/session') onUnauthorized();
  throw new ApiError(res.status, message, parsed);
}

export const get = <T>(path: string): Promise<T> => request<T>('GET', path).then((r) => r.body);
export const post = <T>(path: string, body?: unknown): Promise<T> => request<T>('POST', path, body ?? {}).then((r) => r.body);

/** `a/b` path segment. */
export const seg = (s: string): string => encodeURIComponent(s);

// The API's shapes, as far as the pages use them.

export interface Session {
  user: string;
  via: 'session' | 'token';
  csrfToken?: string;
  expires?: string;
}

export interface ScriptInfo {
  name: string;
  kind: 'smtpsvr' | 'relayout' | 'module';
  size: number;
  modified: string;
  versions: number;
  live?: { version: number; current: boolean };
}

export interface ScriptFile {
  name: string;
  kind: ScriptInfo['kind'];
  source: string;
  encoding: 'utf8' | 'latin1';
  modified: string;
  live?: { version: number; current: boolean };
}

export interface CompileError {
  error: string;
  line: number | null;
  message: string;
}

export interface HistoryEntry {
  id: string;
  saved: string;
  size: number;
}

export interface TryResult {
  output: string;
  hooks: string[];
  prints: string[];
  queued: string[];
  warnings: string[];
}

export type MessageState = 'held' | 'deferred' | 'queued';

export interface QueueRecipient {
  address: string;
  original?: string;
  route: string;
  state: string;
  attempts: number;
  lastReply?: string;
  nextAttempt?: string;
  notify?: string[];
}

export interface QueueMessage {
  id: string;
  state: MessageState;
  sender: string;
  received: string;
  ageSeconds: number;
  size: number;
  client?: { ip: string; helo: string; authUser?: string; tls?: string };
  service?: { id?: number; name?: string };
  nextAttempt?: string;
  recipients: QueueRecipient[];
}

export interface QueueDetail extends QueueMessage {
  dsn?: { ret?: string; envid?: string };
  body?: string;
  smtputf8?: boolean;
  hold: boolean;
  header: string[];
}

export interface QueueCounts {
  messages: number;
  byState: Record<MessageState, number>;
  byDomain: { domain: string; recipients: number; messages: number }[];
}

export type LiveEvent = { seq: number; time: string } & (
  | { type: 'connect'; session: string; ip: string; port: number; service: string }
  | { type: 'disconnect'; session: string; ip: string; ms: number }
  | { type: 'command'; session: string; command: string; reply: string }
  | { type: 'hook'; session: string; hook: string; outcome: 'ok' | 'error' | 'stopped'; ms: number; call?: string; error?: string }
  | { type: 'message'; session: string; queueId: string; outcome: string; from: string; to: string[]; size: number; reply: string }
  | { type: 'script-error'; script: string | null; line: number | null; hook: string; kind: 'error' | 'stopped'; message: string }
);

export interface OpenConnection {
  session: string;
  ip: string;
  port: number;
  service: string;
  since: string;
  helo?: string;
  lastCommand?: string;
  lastReply?: string;
  messages: number;
}

export interface Stats {
  minutes: { minute: string; in: number; out: number; refused: number; queue: number | null }[];
  lastHour: { in: number; out: number; refused: number };
  queue: number;
  connections: number;
}
