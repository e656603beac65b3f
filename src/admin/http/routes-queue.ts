import type { FastifyInstance, FastifyReply } from 'fastify';
import { readHeader } from '../../delivery/relay/header-data.js';
import type { QueueOp, QueueResponse } from '../queue-ops.js';
import { counts, matches, MESSAGE_STATES, summary, type QueueFilter } from '../queue-view.js';
import type { AdminContext } from './context.js';

interface ListQuery extends QueueFilter {
  limit?: number;
  offset?: number;
}

const ACTIONS = ['retry', 'hold', 'release', 'bounce'] as const;

/** A queue command's answer as HTTP: 404 for an unknown id, 400 for anything else refused. */
function answer(reply: FastifyReply, res: QueueResponse): unknown {
  if (res.ok) return { changed: res.changed ?? [] };
  return reply.code(/^no message/.test(res.error) ? 404 : 400).send({ error: res.error });
}

/**
 * The queue: list with filters, counts by state and destination domain, one message in
 * detail, and the actions retry, hold, release, bounce and delete (src/admin/queue-ops.ts).
 */
export function queueRoutes(app: FastifyInstance, ctx: AdminContext): void {
  app.get<{ Querystring: ListQuery }>(
    '/api/queue',
    {
      schema: {
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            sender: { type: 'string' },
            recipient: { type: 'string' },
            domain: { type: 'string' },
            minAge: { type: 'number', minimum: 0 },
            maxAge: { type: 'number', minimum: 0 },
            state: { type: 'string', enum: MESSAGE_STATES },
            limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
            offset: { type: 'integer', minimum: 0, default: 0 },
          },
        },
      },
    },
    async (req) => {
      const { limit = 100, offset = 0, ...filter } = req.query;
      const now = Date.now();
      const all = ctx.queue
        .list()
        .filter((e) => matches(e, filter, now))
        .sort((a, b) => (a.received < b.received ? -1 : a.received > b.received ? 1 : a.id < b.id ? -1 : 1));
      return { total: all.length, offset, messages: all.slice(offset, offset + limit).map((e) => summary(e, now)) };
    },
  );

  app.get('/api/queue/counts', async () => counts(ctx.queue.list()));

  app.get<{ Params: { id: string } }>('/api/queue/:id', async (req, reply) => {
    const env = ctx.queue.get(req.params.id);
    if (!env) return reply.code(404).send({ error: `no message ${req.params.id} in the queue` });
    const head = await readHeader(ctx.queue.spool.messagePath(env.id), env.headerOffset).catch(() => ({ lines: [] as string[] }));
    return { ...summary(env), dsn: env.dsn, body: env.body, smtputf8: env.smtputf8, hold: !!env.hold, header: head.lines };
  });

  app.post<{ Params: { id: string; action: (typeof ACTIONS)[number] }; Body: { reason?: string } | undefined }>(
    '/api/queue/:id/:action',
    {
      schema: {
        params: { type: 'object', properties: { id: { type: 'string' }, action: { type: 'string', enum: [...ACTIONS] } } },
        body: { type: ['object', 'null'], additionalProperties: false, properties: { reason: { type: 'string', maxLength: 400 } } },
      },
    },
    async (req, reply) => {
      const res = await ctx.queueOp({ op: req.params.action as QueueOp, id: req.params.id, reason: req.body?.reason });
      if (res.ok) ctx.log.info({ op: req.params.action, id: req.params.id, by: req.principal?.user, changed: res.changed }, 'queue command from the admin API');
      return answer(reply, res);
    },
  );

  app.delete<{ Params: { id: string } }>('/api/queue/:id', async (req, reply) => {
    if (req.params.id === 'all') return reply.code(400).send({ error: 'delete takes one queue id' });
    const res = await ctx.queueOp({ op: 'delete', id: req.params.id });
    if (res.ok) ctx.log.info({ op: 'delete', id: req.params.id, by: req.principal?.user }, 'queue command from the admin API');
    return answer(reply, res);
  });
}
