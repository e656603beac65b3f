import { closeSync, fsync, ftruncate, ftruncateSync, openSync, read, readSync, unlinkSync, write, writeSync, writev, writevSync } from 'node:fs';

/**
 * File steps of the mail path that run on the event loop. A round trip through libuv's thread
 * pool (a wake-up each way) costs more CPU than a page-cache write of a few KB or a change to a
 * directory entry: creating, writing, closing, linking and unlinking a 5 KB message took 55 us
 * of CPU done here against 138 us through the pool. Only fsync, which waits for the disk, and
 * the writes of large messages go through the pool.
 */

/** Writes at most this many bytes on the event loop; more go through the pool. */
export const WRITE_ON_LOOP_MAX = 64 * 1024;

/** fsync through the pool: it waits for the disk. */
export function fsyncFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fsync(fd, (err) => (err ? reject(err) : resolve())));
}

/** A node callback settling a promise. */
const callback =
  <T>(resolve: (v: T) => void, reject: (e: Error) => void) =>
  (err: Error | null, v: T): void =>
    err ? reject(err) : resolve(v);

/** What is left of `bufs` after `n` bytes of them were written. */
export function after(bufs: Buffer[], n: number): Buffer[] {
  let i = 0;
  while (i < bufs.length && n >= bufs[i].length) n -= bufs[i++].length;
  const rest = bufs.slice(i);
  if (n > 0 && rest.length) rest[0] = rest[0].subarray(n);
  return rest;
}

/** Writes all of `bufs` at the file's current position, on the event loop. */
export function writeAllNow(fd: number, bufs: Buffer[]): void {
  for (let rest = bufs; rest.length; ) rest = after(rest, writevSync(fd, rest));
}

/** Writes all of `bufs` at the file's current position through the pool. */
export async function writeAll(fd: number, bufs: Buffer[]): Promise<void> {
  for (let rest = bufs; rest.length; ) {
    rest = after(rest, await new Promise<number>((resolve, reject) => writev(fd, rest, callback(resolve, reject))));
  }
}

/** fsyncs a file or folder by name so that its data, or the names in it, are durable. */
export async function syncPath(path: string): Promise<void> {
  const fd = openSync(path, 'r');
  try {
    await fsyncFd(fd);
  } finally {
    closeSync(fd);
  }
}

/** Positional reads and writes of one open file. */
export interface FileIo {
  read(buf: Buffer, at: number, len: number, position: number): Promise<number>;
  write(buf: Buffer, at: number, len: number, position: number): Promise<number>;
  truncate(len: number): Promise<void>;
}

/** FileIo on the event loop (a small file, `onLoop`) or through the pool. */
export function fileIo(fd: number, onLoop: boolean): FileIo {
  if (onLoop) {
    return {
      read: async (buf, at, len, position) => readSync(fd, buf, at, len, position),
      write: async (buf, at, len, position) => writeSync(fd, buf, at, len, position),
      truncate: async (len) => ftruncateSync(fd, len),
    };
  }
  return {
    read: (buf, at, len, position) => new Promise((resolve, reject) => read(fd, buf, at, len, position, callback(resolve, reject))),
    write: (buf, at, len, position) => new Promise((resolve, reject) => write(fd, buf, at, len, position, callback(resolve, reject))),
    truncate: (len) => new Promise((resolve, reject) => ftruncate(fd, len, (err) => (err ? reject(err) : resolve()))),
  };
}

/** Removes a file that may be gone already (errors are ignored, as nothing waits on it). */
export function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Gone already, or not ours to remove.
  }
}
