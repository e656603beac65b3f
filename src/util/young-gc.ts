/**
 * Each socket read is a new 64 KB ArrayBuffer outside the JS heap. V8 frees a dead one at its
 * next young-generation collection, but those follow JS allocation, and a process streaming
 * large messages to disk allocates little on the JS heap while it reads megabytes: the dead
 * buffers pile up until their size starts a full mark-compact of the whole heap, about one per
 * 15 MB received (1 MB messages with all hooks: 15 to 17 per 300 messages). A young collection
 * every YOUNG_GC_EVERY bytes read frees them for the price of a scavenge, whose cost follows the
 * live young objects, not the buffers: 2 to 4 mark-compacts per 300 such messages, about 7% less
 * CPU and 10% less peak RSS.
 *
 * The collection is V8's `gc`, there when Node runs with --expose-gc (as `npm start`,
 * bin/moonpost.js and the benchmark run it); without it, nothing is done.
 */
export const YOUNG_GC_EVERY = 4 * 1024 * 1024;

type Gc = (options: { type: 'minor'; execution: 'sync' }) => void;

const gc = (globalThis as { gc?: Gc }).gc ?? null;
let read = 0;

/** Counts bytes read from clients; past YOUNG_GC_EVERY, one young-generation collection. */
export function noteBytesRead(n: number): void {
  read += n;
  if (read < YOUNG_GC_EVERY || gc === null) return;
  read = 0;
  gc({ type: 'minor', execution: 'sync' });
}
