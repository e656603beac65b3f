import { syncPath } from './file-ops.js';

/**
 * fsyncs a folder so that renames and new names in it are durable. Callers that arrive while a
 * sync is running share the next one, so many sessions committing at once cost few fsyncs.
 */
export class DirSyncer {
  private running: Promise<void> | null = null;
  private next: Promise<void> | null = null;

  constructor(
    readonly dir: string,
    private readonly enabled = true,
  ) {}

  sync(): Promise<void> {
    if (!this.enabled) return Promise.resolve();
    if (!this.running) {
      this.running = syncPath(this.dir).finally(() => {
        this.running = null;
      });
      return this.running;
    }
    // A sync already in flight may have started before our rename: wait for a fresh one.
    if (!this.next) {
      this.next = this.running.then(() => {
        this.next = null;
        return this.sync();
      });
    }
    return this.next;
  }
}

/** One DirSyncer per folder, created on first use. */
export class DirSyncers {
  private readonly map = new Map<string, DirSyncer>();
  constructor(private readonly enabled: boolean) {}
  sync(dir: string): Promise<void> {
    let s = this.map.get(dir);
    if (!s) {
      s = new DirSyncer(dir, this.enabled);
      this.map.set(dir, s);
    }
    return s.sync();
  }
}
