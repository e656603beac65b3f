import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply } from 'fastify';

/**
 * Where `npm run build` puts the console (ui/build.mjs): `<repo>/dist/ui`, found from this file
 * both as compiled (dist/admin/http/) and as run from source (src/admin/http/).
 */
export const DEFAULT_CONSOLE_DIR = fileURLToPath(new URL('../../../dist/ui/', import.meta.url));

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
};
/** File names the bundler writes: no folders, no dot files. */
const ASSET = /^[A-Za-z0-9_-][A-Za-z0-9_.-]*$/;

/**
 * The console's page: scripts from this origin only, no inline script, no framing.
 * CodeMirror adds its style sheets at run time, hence 'unsafe-inline' for styles only.
 */
const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "object-src 'none'",
].join('; ');

const NOT_BUILT = `<!doctype html><meta charset="utf-8"><title>moonpost console</title>
<p>The admin console is not built. Run <code>npm run build</code> (or <code>npm start</code>, which builds first); the JSON API under <code>/api</code> works without it.</p>`;

/**
 * The browser console (a single page, same origin as the API): `/` and `/assets/*`, public
 * (the page itself asks for a login). Files are read per request, so a rebuild needs no restart;
 * an ETag lets the browser revalidate cheaply.
 */
export function consoleRoutes(app: FastifyInstance, dir: string): void {
  const send = async (reply: FastifyReply, file: string): Promise<unknown> => {
    let body: Buffer;
    try {
      body = await readFile(join(dir, file));
    } catch {
      if (file === 'index.html') return reply.code(503).type('text/html; charset=utf-8').header('content-security-policy', CSP).send(NOT_BUILT);
      return reply.code(404).send({ error: `no console file ${file}` });
    }
    const etag = `"${createHash('sha1').update(body).digest('base64url')}"`;
    void reply.header('etag', etag).header('cache-control', 'no-cache').header('content-security-policy', CSP);
    if (reply.request.headers['if-none-match'] === etag) return reply.code(304).send();
    return reply.type(TYPES[extname(file)] ?? 'application/octet-stream').send(body);
  };
  const page = { config: { public: true } };
  app.get('/', page, (_req, reply) => send(reply, 'index.html'));
  app.get('/index.html', page, (_req, reply) => reply.redirect('/'));
  app.get<{ Params: { file: string } }>('/assets/:file', page, (req, reply) => {
    const file = req.params.file;
    if (!ASSET.test(file)) return reply.code(404).send({ error: `no console file ${file}` });
    return send(reply, join('assets', file));
  });
}

/** Whether the console has been built into `dir` (for the start-up message). */
export const consoleBuilt = (dir: string): boolean => existsSync(join(dir, 'index.html'));
