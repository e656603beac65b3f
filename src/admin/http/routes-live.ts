import type { FastifyInstance } from 'fastify';
import type { LiveEvent } from '../events.js';
import type { AdminContext } from './context.js';

/** A stream whose client reads slower than this many bytes behind is dropped. */
const MAX_BACKLOG = 1024 * 1024;
const PING_MS = 15_000;

interface LiveQuery {
  since?: number;
  types?: string;
  limit?: number;
}

const typeSet = (types: string | undefined): Set<string> | undefined =>
  types
    ? new Set(
        types
          .split(',')
          .map((t) => t.trim())
          .filter(Boolean),
      )
    : undefined;

const liveQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    since: { type: 'integer', minimum: 0 },
    types: { type: 'string', maxLength: 200 },
    limit: { type: 'integer', minimum: 1, maximum: 2000, default: 500 },
  },
};

/**
 * Live: server-sent events of connections, commands, hook calls, messages and script errors
 * as they happen; recent events, open connections and recent script errors as JSON; and the
 * dashboard's last hour per minute.
 */
export function liveRoutes(app: FastifyInstance, ctx: AdminContext): { closeStreams(): void } {
  const streams = new Set<() => void>();

  app.get<{ Querystring: LiveQuery }>('/api/live/stream', { schema: { querystring: liveQuery } }, (req, reply) => {
    const types = typeSet(req.query.types);
    const lastId = Number(req.headers['last-event-id']);
    const since = Number.isInteger(lastId) && lastId >= 0 ? lastId : req.query.since;
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    let unsubscribe = (): void => undefined;
    const ping = setInterval(() => res.write(': ping\n\n'), PING_MS);
    ping.unref();
    const end = (): void => {
      unsubscribe();
      clearInterval(ping);
      streams.delete(end);
      if (!res.writableEnded) res.end();
    };
    streams.add(end);
    const send = (e: LiveEvent): void => {
      if (types && !types.has(e.type)) return;
      if (res.writableLength > MAX_BACKLOG) return end();
      res.write(`id: ${e.seq}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
    };
    res.write(`retry: 2000\nevent: hello\ndata: ${JSON.stringify({ seq: ctx.bus.lastSeq })}\n\n`);
    if (since !== undefined) for (const e of ctx.bus.recent(since, types)) send(e);
    unsubscribe = ctx.bus.subscribe(send, true);
    req.raw.on('close', end);
    res.on('error', end);
  });

  app.get<{ Querystring: LiveQuery }>('/api/live/events', { schema: { querystring: liveQuery } }, async (req) => {
    const events = ctx.bus.recent(req.query.since ?? 0, typeSet(req.query.types));
    return { lastSeq: ctx.bus.lastSeq, events: events.slice(-(req.query.limit ?? 500)) };
  });

  app.get('/api/live/connections', async () => ({ connections: ctx.live.connections() }));

  app.get('/api/live/errors', async () => ({ errors: ctx.bus.errors() }));

  app.get('/api/stats', async () => {
    const minutes = ctx.stats.series();
    const sum = (k: 'in' | 'out' | 'refused'): number => minutes.reduce((n, m) => n + m[k], 0);
    return {
      minutes,
      lastHour: { in: sum('in'), out: sum('out'), refused: sum('refused') },
      queue: ctx.queue.size,
      connections: ctx.live.connections().length,
    };
  });

  return {
    closeStreams() {
      for (const end of [...streams]) end();
    },
  };
}
