import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ConfigInput } from '../../src/config/schema.js';
import { startServer, type Harness, type HarnessOptions } from './harness.js';
import { openSession, sendMail } from './smtp-client.js';
export { freePort } from './test-util.js';

export type SenderInput = NonNullable<ConfigInput['senders']>[number];

/** A smarthost sender on a loopback port, plain SMTP. */
export function smarthost(id: number, port: number, extra: Partial<SenderInput> = {}): SenderInput {
  // One connection at a time unless a test asks for more, so order and limits are observable.
  return { id, name: `sender${id}`, mode: 'smarthost', host: '127.0.0.1', port, tls: 'none', connectionsPerDestination: 1, ...extra };
}

/** Quick retries for tests: runs every `interval` seconds, first retry after `firstRetry`. */
export function quickDelivery(firstRetry = 0.2, giveUpAfter = 3600, interval = 3600, delayWarningAfter = 0): HarnessOptions['delivery'] {
  return { runIntervalSeconds: interval, retry: { firstRetry, maxInterval: Math.max(firstRetry, 1), giveUpAfter, delayWarningAfter, multiplier: 2 } };
}

export interface RelayHarness extends Harness {
  /** Writes (or replaces) relayout.lua and reloads it. */
  setRelayout(source: string): Promise<void>;
}

/**
 * A real moonpost whose scripts folder holds `relayout` as relayout.lua (when given) before it
 * starts; in `dataDir` when given (kept at stop), else a temporary folder (removed).
 */
export async function startRelayServer(opts: HarnessOptions, relayout?: string, dataDir?: string): Promise<RelayHarness> {
  const dir = dataDir ?? (await mkdtemp(join(tmpdir(), 'moonpost-relay-')));
  const scripts = join(dir, 'scripts');
  await mkdir(scripts, { recursive: true });
  if (relayout !== undefined) await writeFile(join(scripts, 'relayout.lua'), relayout);
  const h = await startServer(opts, dir);
  return {
    ...h,
    async stop() {
      await h.stop();
      if (!dataDir) await rm(dir, { recursive: true, force: true });
    },
    async setRelayout(source: string) {
      await writeFile(join(scripts, 'relayout.lua'), source);
      await h.server.scripts.reload();
    },
  };
}

/** A small message with CRLF line ends from a local sender. */
export function mail(subject: string, opts: { from?: string; to?: string; body?: string; headers?: string[] } = {}): string {
  return [
    `From: ${opts.from ?? 'sender@localhost'}`,
    `To: ${opts.to ?? 'rcpt@remote.test'}`,
    `Subject: ${subject}`,
    `Message-ID: <${subject.replace(/\W+/g, '-')}.${Date.now()}@localhost>`,
    ...(opts.headers ?? []),
    '',
    opts.body ?? `Body of ${subject}.`,
    '',
  ].join('\r\n');
}

/** One SMTP transaction into the server on `port` (from 127.0.0.1, which may relay); asserts 250, returns the queue id. */
export async function queueMail(port: number, from: string, to: string[], data: string): Promise<string> {
  const c = await openSession(port);
  try {
    const r = await sendMail(c, from, to, data);
    assert.equal(r.code, 250, r.raw);
    await c.cmd('QUIT');
    return /queued as (\S+)/.exec(r.raw)?.[1] ?? '';
  } finally {
    c.close();
  }
}

export interface Staged {
  from?: string;
  to: string[];
  data: string;
}

/**
 * Queues messages in `dataDir` with a server that has no senders (remote mail just waits),
 * then stops it: the next server started on that folder finds them all due in its first run.
 */
export async function stageMessages(dataDir: string, opts: HarnessOptions, messages: Staged[]): Promise<void> {
  const h = await startServer({ ...opts, senders: [] }, dataDir);
  try {
    for (const m of messages) {
      await queueMail(h.port, m.from ?? 'sender@localhost', m.to, m.data);
      // Distinct arrival times for "oldest first".
      await new Promise((r) => setTimeout(r, 3));
    }
    await h.settle();
  } finally {
    await h.stop();
  }
}

export async function waitFor<T>(what: string, fn: () => T | undefined | false | null | Promise<T | undefined | false | null>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Subject lines of messages a scripted server received, in order. */
export function subjects(texts: (string | null)[]): string[] {
  return texts.map((t) => /^Subject: (.*)$/m.exec(t ?? '')?.[1]?.trim() ?? '?');
}

// ------------------------------------------------------------------ MIME / DSN parsing

export interface Entity {
  /** Lower-case field name → unfolded values in order. */
  headers: Map<string, string[]>;
  body: string;
}

/** Splits an entity (CRLF or LF line ends) into its unfolded header fields and its body. */
export function parseEntity(text: string): Entity {
  const empty = /^\r?\n/.exec(text);
  if (empty) return { headers: new Map(), body: text.slice(empty[0].length) };
  const m = /\r?\n\r?\n/.exec(text);
  const head = m ? text.slice(0, m.index) : text;
  const body = m ? text.slice(m.index + m[0].length) : '';
  const headers = new Map<string, string[]>();
  const unfolded = head.replace(/\r?\n(?=[ \t])/g, '');
  for (const line of unfolded.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    headers.set(name, [...(headers.get(name) ?? []), line.slice(colon + 1).trim()]);
  }
  return { headers, body };
}

export const header = (e: Entity, name: string): string | undefined => e.headers.get(name.toLowerCase())?.[0];

/** The parts of a multipart entity (RFC 2046 §5.1.1), without preamble and epilogue. */
export function multipartParts(e: Entity): Entity[] {
  const ct = header(e, 'content-type') ?? '';
  const boundary = /boundary="?([^";]+)"?/i.exec(ct)?.[1];
  assert.ok(boundary, `no boundary in ${ct}`);
  const delim = `--${boundary}`;
  const chunks = e.body.split(new RegExp(`(?:^|\\r?\\n)${delim.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  const parts: Entity[] = [];
  for (const c of chunks.slice(1)) {
    if (c.startsWith('--')) break;
    parts.push(parseEntity(c.replace(/^[ \t]*\r?\n/, '')));
  }
  return parts;
}

export interface ParsedDsn {
  message: Entity;
  parts: Entity[];
  /** The per-message fields of the message/delivery-status part (lower-case names). */
  perMessage: Map<string, string>;
  /** One map per recipient group. */
  recipients: Map<string, string>[];
  /** The returned original (message/rfc822 or text/rfc822-headers), parsed. */
  original?: Entity;
}

/** Parses a delivery status notification (RFC 3464 in multipart/report, RFC 6522). */
export function parseDsn(text: string): ParsedDsn {
  const message = parseEntity(text);
  assert.match(header(message, 'content-type') ?? '', /^multipart\/report;\s*report-type=delivery-status;/i);
  const parts = multipartParts(message);
  const status = parts.find((p) => /^message\/delivery-status/i.test(header(p, 'content-type') ?? ''));
  assert.ok(status, 'a message/delivery-status part');
  const groups = status.body
    .replace(/\r?\n(?=[ \t])/g, ' ')
    .split(/\r?\n\r?\n/)
    .map((g) => g.trim())
    .filter(Boolean)
    .map((g) => {
      const fields = new Map<string, string>();
      for (const line of g.split(/\r?\n/)) {
        const colon = line.indexOf(':');
        fields.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).replace(/\s+/g, ' ').trim());
      }
      return fields;
    });
  const orig = parts.find((p) => /^(message\/rfc822|text\/rfc822-headers)/i.test(header(p, 'content-type') ?? ''));
  return { message, parts, perMessage: groups[0], recipients: groups.slice(1), original: orig ? parseEntity(orig.body) : undefined };
}
