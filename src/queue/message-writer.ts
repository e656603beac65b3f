import { closeSync, openSync } from 'node:fs';
import { fsyncFd, unlinkQuietly, writeAll, writeAllNow, WRITE_ON_LOOP_MAX } from '../util/file-ops.js';

const FLUSH_AT = 256 * 1024;
const PAUSE_AT = 4 * 1024 * 1024;

/**
 * Writes a message file as it arrives: small pieces are gathered and written with writev, so a
 * 5 KB message costs one write and a 1 GB message never sits in memory. `write` returns false
 * when the caller should stop reading until `onDrain` fires. Opening, closing, removing and the
 * last write of a small message are done on the event loop, the rest through the thread pool
 * (util/file-ops.ts).
 */
export class MessageWriter {
  private fd = -1;
  private pending: Buffer[] = [];
  private pendingLen = 0;
  private inflight: Promise<void> = Promise.resolve();
  private inflightLen = 0;
  private error: Error | null = null;
  private drainWaiters: (() => void)[] = [];
  bytes = 0;
  /** Whether the exclusive open made the file (finish does not clear it: the file stays ours). */
  private created = false;

  constructor(readonly path: string) {
    try {
      this.fd = openSync(path, 'wx', 0o600);
      this.created = true;
    } catch (err) {
      this.error = err as Error;
    }
  }

  write(bufs: Buffer[]): boolean {
    for (const b of bufs) {
      this.pending.push(b);
      this.pendingLen += b.length;
      this.bytes += b.length;
    }
    if (this.pendingLen >= FLUSH_AT) this.flush();
    return this.inflightLen + this.pendingLen < PAUSE_AT;
  }

  onDrain(cb: () => void): void {
    this.drainWaiters.push(cb);
  }

  private flush(): void {
    if (!this.pendingLen) return;
    const bufs = this.pending;
    const len = this.pendingLen;
    this.pending = [];
    this.pendingLen = 0;
    if (this.error) return;
    // Nothing in the pool to keep order with: a small rest is written at once.
    if (!this.inflightLen && len <= WRITE_ON_LOOP_MAX) {
      try {
        writeAllNow(this.fd, bufs);
      } catch (err) {
        this.error = err as Error;
      }
      return;
    }
    this.inflightLen += len;
    this.inflight = this.inflight.then(async () => {
      if (!this.error) {
        try {
          await writeAll(this.fd, bufs);
        } catch (err) {
          this.error = err as Error;
        }
      }
      this.inflightLen -= len;
      if (this.inflightLen + this.pendingLen < PAUSE_AT / 2) {
        const w = this.drainWaiters;
        this.drainWaiters = [];
        for (const cb of w) cb();
      }
    });
  }

  /**
   * Writes what has been given so far to the file without closing it, so that it can be read
   * (ProcessMessage's helpers read the stored message). Throws the first write error.
   */
  async flushed(): Promise<void> {
    this.flush();
    await this.inflight;
    if (this.error) throw this.error;
  }

  /** Writes what remains, fsyncs (when asked) and closes. Throws the first write error. */
  async finish(fsync: boolean): Promise<void> {
    await this.flushed();
    const fd = this.fd;
    this.fd = -1;
    try {
      if (fsync) await fsyncFd(fd);
    } finally {
      closeSync(fd);
    }
  }

  /** Drops the file: the message was refused or the client went away. */
  async abort(): Promise<void> {
    this.pending = [];
    this.pendingLen = 0;
    await this.inflight;
    if (this.fd >= 0) closeQuietly(this.fd);
    this.fd = -1;
    // Only a file this writer created is ours to remove: when the exclusive open failed, the
    // name belongs to someone else.
    if (this.created) unlinkQuietly(this.path);
    const w = this.drainWaiters;
    this.drainWaiters = [];
    for (const cb of w) cb();
  }
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Closed is closed.
  }
}
