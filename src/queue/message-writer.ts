import { open, unlink, type FileHandle } from 'node:fs/promises';

const FLUSH_AT = 256 * 1024;
const PAUSE_AT = 4 * 1024 * 1024;

/**
 * Writes a message file as it arrives: small pieces are gathered and written with writev, so a
 * 5 KB message costs one write and a 1 GB message never sits in memory. `write` returns false
 * when the caller should stop reading until `onDrain` fires.
 */
export class MessageWriter {
  private fh: FileHandle | null = null;
  private opening: Promise<void>;
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
    this.opening = open(path, 'wx', 0o600).then(
      (fh) => {
        this.fh = fh;
        this.created = true;
      },
      (err: Error) => {
        this.error = err;
      },
    );
  }

  write(bufs: Buffer[]): boolean {
    for (const b of bufs) {
      this.pending.push(b);
      this.pendingLen += b.length;
    }
    this.bytes += bufs.reduce((n, b) => n + b.length, 0);
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
    this.inflightLen += len;
    this.inflight = this.inflight.then(async () => {
      await this.opening;
      if (this.error || !this.fh) return;
      try {
        await writeAll(this.fh, bufs);
      } catch (err) {
        this.error = err as Error;
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
    await this.opening;
    if (this.error) throw this.error;
  }

  /** Writes what remains, fsyncs (when asked) and closes. Throws the first write error. */
  async finish(fsync: boolean): Promise<void> {
    this.flush();
    await this.inflight;
    await this.opening;
    if (this.error) throw this.error;
    const fh = this.fh!;
    this.fh = null;
    try {
      if (fsync) await fh.sync();
    } finally {
      await fh.close();
    }
  }

  /** Drops the file: the message was refused or the client went away. */
  async abort(): Promise<void> {
    this.pending = [];
    this.pendingLen = 0;
    await this.inflight.catch(() => undefined);
    await this.opening;
    const fh = this.fh;
    this.fh = null;
    // Only a file this writer created is ours to remove: when the exclusive open failed, the
    // name belongs to someone else.
    if (fh) await fh.close().catch(() => undefined);
    if (this.created) await unlink(this.path).catch(() => undefined);
    const w = this.drainWaiters;
    this.drainWaiters = [];
    for (const cb of w) cb();
  }
}

async function writeAll(fh: FileHandle, bufs: Buffer[]): Promise<void> {
  let rest = bufs;
  while (rest.length) {
    const { bytesWritten } = await fh.writev(rest);
    let n = bytesWritten;
    let i = 0;
    while (i < rest.length && n >= rest[i].length) n -= rest[i++].length;
    rest = rest.slice(i);
    if (n > 0 && rest.length) rest[0] = rest[0].subarray(n);
  }
}
