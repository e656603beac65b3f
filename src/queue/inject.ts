import type { Directory } from '../policy/directory.js';
import type { Envelope } from './envelope.js';
import type { QueueIndex } from './queue-index.js';
import { newQueueId } from './spool.js';

/**
 * Queues a message made by the server itself (a DSN): our Return-Path line, then its bytes,
 * committed like any received message and routed through the directory (local or relay).
 */
export async function injectMessage(
  index: QueueIndex,
  directory: Directory,
  msg: { sender: string; recipient: string; chunks: AsyncIterable<Buffer>; body?: Envelope['body']; smtputf8?: boolean },
  hostname: string,
): Promise<Envelope> {
  const id = newQueueId();
  const writer = index.spool.create(id);
  const returnPath = `Return-Path: <${msg.sender}>\r\n`;
  writer.write([Buffer.from(returnPath)]);
  let size = 0;
  try {
    for await (const chunk of msg.chunks) {
      size += chunk.length;
      writer.write([chunk]);
    }
  } catch (err) {
    await writer.abort();
    throw err;
  }
  const targets = directory.resolve(msg.recipient) ?? [{ address: msg.recipient, route: { kind: 'remote' as const } }];
  const env: Envelope = {
    id,
    sender: msg.sender,
    recipients: targets.map((t) => ({ address: t.address, route: t.route, state: 'pending' })),
    received: new Date().toISOString(),
    headerOffset: Buffer.byteLength(returnPath),
    size,
    client: { ip: '127.0.0.1', helo: hostname },
    service: { id: -1, name: 'internal' },
    body: msg.body,
    smtputf8: msg.smtputf8 || undefined,
  };
  await index.spool.commit(env, writer);
  index.add(env);
  return env;
}
