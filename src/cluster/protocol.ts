import type { Config } from '../config/schema.js';
import type { Envelope } from '../queue/envelope.js';
import type { BoundService } from '../server.js';
import type { HookStats } from '../script/metrics.js';
import type { Reply } from '../smtp/reply.js';
import type { MessageOutcome } from '../smtp/context.js';

/**
 * The messages between the primary and its SMTP workers over Node's IPC channel. One channel
 * per worker delivers in order, so a hand-off sent before `bye` is read before the channel
 * closes; the primary reads nothing of a dead worker after its `disconnect` event.
 */

/** A session event of a worker, replayed on the primary's live feed (admin API on only). */
export type ForwardedEvent =
  | { k: 'opened'; s: string; client: { ip: string; port: number; service: string } }
  | { k: 'closed'; s: string }
  | { k: 'command'; s: string; line: string }
  | { k: 'reply'; s: string; r: Reply }
  | { k: 'message'; s: string; m: MessageOutcome }
  | { k: 'hook'; s: string; hook: string; outcome: 'ok' | 'error' | 'stopped'; ms: number; error?: string }
  | { k: 'script-failure'; hook: string; kind: 'error' | 'stopped'; message: string };

export type WorkerMessage =
  /** First word of a worker: the tag its queue ids end with (see `queueIdTag`). */
  | { t: 'hello'; tag: string }
  | { t: 'ready'; bound: BoundService[] }
  | { t: 'failed'; error: string }
  /** A committed message the worker did not settle (envelope as on disk): the primary now owns it. */
  | { t: 'queued'; env: Envelope }
  | { t: 'events'; events: ForwardedEvent[] }
  /**
   * The worker's script callback counters and latency buckets so far (cumulative), and the
   * local deliveries it made since its last report.
   */
  | { t: 'stats'; hooks: Record<string, HookStats>; histograms: Record<string, number[]>; local: { delivered: number; deferred: number } }
  | { t: 'bye' };

export type PrimaryMessage =
  | { t: 'start'; worker: number; config: Config; forward: boolean }
  | { t: 'reload' }
  | { t: 'stop'; deadlineMs: number };

/** Queue ids end with a 4-character tag chosen at random per process (src/queue/spool.ts). */
export const QUEUE_TAG_LENGTH = 4;

export function queueIdTag(id: string): string {
  return id.slice(-QUEUE_TAG_LENGTH);
}

export function isWorkerMessage(m: unknown): m is WorkerMessage {
  return typeof m === 'object' && m !== null && typeof (m as { t?: unknown }).t === 'string';
}
