import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { SmtpClient, type ClientOptions } from '../../src/delivery/smtp-client.js';

export interface SeenReply {
  command: string;
  full: string;
  last: string;
}

/** Connects to 127.0.0.1:port with test defaults; every reply is recorded in `seen`. */
export async function connectTo(
  port: number,
  opts: Partial<ClientOptions> = {},
): Promise<{ client: SmtpClient; seen: SeenReply[] }> {
  const seen: SeenReply[] = [];
  const user = opts.onReply;
  const client = await SmtpClient.connect({
    host: '127.0.0.1',
    port,
    tls: 'none',
    rejectUnauthorized: false,
    helo: 'client.test',
    ...opts,
    onReply: (command, full, last) => {
      seen.push({ command, full, last });
      return user?.(command, full, last);
    },
  });
  return { client, seen };
}

/** A message body from a string (sent as UTF-8). */
export const text = (s: string) => () => [s];

/**
 * Writes a queue-like file: a `Return-Path:` line, then `lines` lines of `lineText` (CRLF).
 * Returns the path, the offset of the message and the SHA-256/size of the message part.
 */
export async function writeQueueFile(lines: number, lineText: string): Promise<{ path: string; offset: number; size: number; sha256: string; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'moonpost-client-'));
  const path = join(dir, 'big.msg');
  const head = 'Return-Path: <sender@example.com>\r\n';
  const out = createWriteStream(path);
  out.write(head);
  const hash = createHash('sha256');
  const block = Buffer.from(`${lineText}\r\n`.repeat(1000));
  let size = 0;
  for (let i = 0; i < lines; i += 1000) {
    const b = i + 1000 <= lines ? block : Buffer.from(`${lineText}\r\n`.repeat(lines - i));
    hash.update(b);
    size += b.length;
    if (!out.write(b)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'close');
  return { path, offset: Buffer.byteLength(head), size, sha256: hash.digest('hex'), dir };
}

/** Full garbage collection on demand (the flag set at run time; tests run without --expose-gc). */
function collector(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/**
 * Samples live memory (heap + buffers, after a full GC, every 25 ms) while `fn` runs; returns
 * the largest growth over the start in bytes. Garbage does not count: what stays reachable does.
 */
export async function peakMemoryGrowth(fn: () => Promise<void>): Promise<number> {
  const gc = collector();
  const live = (): number => {
    gc();
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };
  const base = live();
  let peak = base;
  const timer = setInterval(() => (peak = Math.max(peak, live())), 25);
  try {
    await fn();
  } finally {
    clearInterval(timer);
  }
  return peak - base;
}
