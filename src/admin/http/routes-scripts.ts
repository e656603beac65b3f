import { copyFile, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isIP } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { createTwoFilesPatch } from 'diff';
import { compileScript } from '../../script/compile.js';
import { runTranscript, TryError } from '../../script/script-try.js';
import { TranscriptError } from '../../script/try-format.js';
import { checkName, decode, encode, scriptKind, ScriptFileError } from '../script-files.js';
import type { AdminContext } from './context.js';

type Encoding = 'utf8' | 'latin1';
interface SourceBody {
  source: string;
  encoding?: Encoding;
}
interface TryBody {
  transcript: string;
  source?: string;
  encoding?: Encoding;
  ip?: string;
  tls?: boolean;
  authUser?: string;
  serviceId?: number;
}

const MAX_SOURCE = 1024 * 1024;
const sourceSchema = {
  type: 'object',
  required: ['source'],
  additionalProperties: false,
  properties: { source: { type: 'string', maxLength: MAX_SOURCE }, encoding: { type: 'string', enum: ['utf8', 'latin1'] } },
};
const nameParams = { type: 'object', properties: { name: { type: 'string' } } };

/** A compile error `NAME:LINE: message` split for the editor. */
function compileError(error: string): { error: string; line: number | null; message: string } {
  const m = /^[^:]*:(\d+): ([\s\S]*)$/.exec(error);
  return m ? { error, line: Number(m[1]), message: m[2] } : { error, line: null, message: error };
}

/**
 * Scripts: list, read, check (the real Lua compiler), save (refused unless it compiles; the
 * replaced version goes to the history; live for the next connection or send run), history
 * with diffs and restore, and try (a transcript through the session and the script).
 */
export function scriptRoutes(app: FastifyInstance, ctx: AdminContext): void {
  const compile = async (name: string, bytes: Buffer) => compileScript(await ctx.scripts.openVm(), bytes, name);

  /** Which version of a main script is live, and whether it is the file's content. */
  const liveInfo = (name: string, bytes?: Buffer) => {
    const kind = scriptKind(name);
    if (kind === 'module') return undefined;
    const store = kind === 'smtpsvr' ? ctx.scripts.smtpsvr : ctx.scripts.relayout;
    const current = store?.current;
    return { version: current ? store!.version : 0, current: !!current && !!bytes && current.source.equals(bytes) };
  };

  /** Saves after a compile check and makes the scripts live (ScriptHost.reload()). */
  const save = async (name: string, bytes: Buffer) => {
    const compiled = await compile(name, bytes);
    if ('error' in compiled) return { status: 422, body: compileError(compiled.error) };
    const saved = await ctx.files.save(name, bytes);
    await ctx.scripts.reload();
    ctx.log.info({ script: saved.name, archived: saved.archived }, 'script saved from the admin console');
    return { status: 200, body: { name: saved.name, saved: true, archived: saved.archived, live: liveInfo(saved.name, bytes) } };
  };

  app.get('/api/scripts', async () => {
    const scripts = await ctx.files.list();
    return {
      dir: ctx.files.dir,
      scripts: await Promise.all(
        scripts.map(async (s) => ({ ...s, live: s.kind === 'module' ? undefined : liveInfo(s.name, (await ctx.files.read(s.name)).bytes) })),
      ),
    };
  });

  app.get<{ Params: { name: string } }>('/api/scripts/:name', { schema: { params: nameParams } }, async (req) => {
    const f = await ctx.files.read(checkName(req.params.name));
    return { name: f.name, kind: scriptKind(f.name), ...decode(f.bytes), modified: f.modified, live: liveInfo(f.name, f.bytes) };
  });

  app.post<{ Params: { name: string }; Body: SourceBody }>('/api/scripts/:name/check', { schema: { params: nameParams, body: sourceSchema } }, async (req) => {
    const name = checkName(req.params.name);
    const r = await compile(name, encode(req.body.source, req.body.encoding));
    return 'error' in r ? { ok: false, ...compileError(r.error) } : { ok: true };
  });

  app.put<{ Params: { name: string }; Body: SourceBody }>('/api/scripts/:name', { schema: { params: nameParams, body: sourceSchema } }, async (req, reply) => {
    const r = await save(checkName(req.params.name), encode(req.body.source, req.body.encoding));
    return reply.code(r.status).send(r.body);
  });

  app.get<{ Params: { name: string } }>('/api/scripts/:name/history', { schema: { params: nameParams } }, async (req) => {
    const name = checkName(req.params.name);
    return { name, versions: await ctx.files.history(name) };
  });

  app.get<{ Params: { name: string; id: string }; Querystring: { against?: string } }>('/api/scripts/:name/history/:id', async (req) => {
    const name = checkName(req.params.name);
    const old = await ctx.files.version(name, req.params.id);
    let against: Buffer;
    let againstLabel: string;
    if (req.query.against) {
      against = await ctx.files.version(name, req.query.against);
      againstLabel = `${name}@${req.query.against}`;
    } else {
      against = ctx.files.find(name) ? (await ctx.files.read(name)).bytes : Buffer.alloc(0);
      againstLabel = `${name} (current)`;
    }
    const entry = (await ctx.files.history(name)).find((v) => v.id === req.params.id);
    return {
      name,
      id: req.params.id,
      saved: entry?.saved,
      ...decode(old),
      diff: createTwoFilesPatch(`${name}@${req.params.id}`, againstLabel, decode(old).source, decode(against).source),
    };
  });

  app.post<{ Params: { name: string; id: string } }>('/api/scripts/:name/history/:id/restore', async (req, reply) => {
    const name = checkName(req.params.name);
    const r = await save(name, await ctx.files.version(name, req.params.id));
    return reply.code(r.status).send({ ...r.body, restored: req.params.id });
  });

  app.post<{ Params: { name: string }; Body: TryBody }>(
    '/api/scripts/:name/try',
    {
      schema: {
        params: nameParams,
        body: {
          type: 'object',
          required: ['transcript'],
          additionalProperties: false,
          properties: {
            transcript: { type: 'string', maxLength: MAX_SOURCE },
            source: { type: 'string', maxLength: MAX_SOURCE },
            encoding: { type: 'string', enum: ['utf8', 'latin1'] },
            ip: { type: 'string', maxLength: 64 },
            tls: { type: 'boolean' },
            authUser: { type: 'string', minLength: 1 },
            serviceId: { type: 'integer', minimum: 0 },
          },
        },
      },
    },
    async (req, reply) => {
      const name = checkName(req.params.name);
      if (scriptKind(name) !== 'smtpsvr') throw new ScriptFileError(400, 'try runs SMTP transcripts: only SMTPSVR.LUA can be tried');
      const b = req.body;
      if (b.ip !== undefined && !isIP(b.ip)) return reply.code(400).send({ error: `ip: "${b.ip}" is not an IP address` });
      // Unsaved text runs from a temporary folder holding it and copies of the modules.
      let tmp: string | null = null;
      let script: string;
      if (b.source !== undefined) {
        tmp = await mkdtemp(join(tmpdir(), 'moonpost-admin-try-'));
        for (const f of await readdir(ctx.files.dir).catch(() => [] as string[])) {
          if (/\.lua$/i.test(f) && !f.startsWith('.') && f.toLowerCase() !== name.toLowerCase()) await copyFile(join(ctx.files.dir, f), join(tmp, f)).catch(() => undefined);
        }
        script = join(tmp, name);
        await writeFile(script, encode(b.source, b.encoding));
      } else {
        const path = ctx.files.find(name);
        if (!path) throw new ScriptFileError(404, `no script ${name}`);
        script = path;
      }
      try {
        const output = await runTranscript({ script, transcript: Buffer.from(b.transcript), config: ctx.config, ip: b.ip, tls: b.tls, authUser: b.authUser, serviceId: b.serviceId });
        const lines = output.split('\n').filter((l) => l !== '');
        const tagged = (tag: string) => lines.filter((l) => l.startsWith(`${tag}:`)).map((l) => l.slice(tag.length + 1).trimStart());
        return { output, hooks: tagged('H'), prints: tagged('P'), queued: tagged('Q'), warnings: tagged('L') };
      } catch (err) {
        if (err instanceof TranscriptError) return reply.code(400).send({ error: `transcript: ${err.message}` });
        if (err instanceof TryError) return reply.code(422).send(compileError(err.message.replace(script, name)));
        throw err;
      } finally {
        if (tmp) await rm(tmp, { recursive: true, force: true });
      }
    },
  );
}
