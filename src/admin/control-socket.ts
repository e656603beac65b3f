import { createConnection, createServer, type Server } from 'node:net';
import { unlink } from 'node:fs/promises';
import type { QueueRequest, QueueResponse } from './queue-ops.js';

const MAX_REQUEST = 64 * 1024;

/**
 * A Unix socket in the data folder through which `moonpost queue ...` reaches the running
 * server (one JSON request per line, one JSON answer), so changes go through its queue index.
 * The folder's permissions guard it: only who can write the queue can use it.
 */
export async function listenControl(path: string, handle: (req: QueueRequest) => Promise<QueueResponse>): Promise<Server> {
  await unlink(path).catch(() => undefined);
  const server = createServer((sock) => {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', () => undefined);
    sock.on('data', (d: string) => {
      buf += d;
      if (buf.length > MAX_REQUEST) return sock.destroy();
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      let req: QueueRequest;
      try {
        req = JSON.parse(buf.slice(0, nl)) as QueueRequest;
      } catch {
        sock.end(JSON.stringify({ ok: false, error: 'bad request' }) + '\n');
        return;
      }
      handle(req).then(
        (res) => sock.end(JSON.stringify(res) + '\n'),
        (err: Error) => sock.end(JSON.stringify({ ok: false, error: err.message }) + '\n'),
      );
    });
  });
  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(path, () => res());
  });
  server.unref();
  return server;
}

/** Sends one request to a running server; null when no server listens there. */
export function controlRequest(path: string, req: QueueRequest, timeoutMs = 30_000): Promise<QueueResponse | null> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer from the server on ${path}`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(JSON.stringify(req) + '\n'));
    sock.on('data', (d: string) => (buf += d));
    sock.on('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(buf) as QueueResponse);
      } catch {
        reject(new Error('bad answer from the server'));
      }
    });
    sock.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') resolve(null);
      else reject(err);
    });
  });
}
