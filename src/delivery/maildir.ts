import { copyFile, link, mkdir, stat, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { syncPath, type DirSyncers } from '../util/fsync.js';

let seq = 0;
// Maildir names must not contain "/" or ":"; the host part is escaped as the spec says.
const host = hostname().replace(/\//g, '\\057').replace(/:/g, '\\072');

function uniqueName(size: number): string {
  const now = Date.now();
  seq = (seq + 1) % 1e9;
  const secs = Math.floor(now / 1000);
  const usec = (now % 1000) * 1000;
  return `${secs}.M${usec}P${process.pid}Q${seq}.${host},S=${size}`;
}

/**
 * Delivers into Maildir folders (Q2). The queue file is complete and already fsynced, so it
 * is hard-linked straight into `new/` (an atomic, zero-copy step that Maildir readers accept);
 * across filesystems it is copied through `tmp/` instead.
 */
export class MaildirDelivery {
  private readonly made = new Set<string>();

  constructor(
    readonly mailRoot: string,
    private readonly syncers: DirSyncers,
    private readonly fsync: boolean,
  ) {}

  folder(mailbox: string): string {
    return join(this.mailRoot, mailbox);
  }

  private async ensure(dir: string): Promise<void> {
    if (this.made.has(dir)) return;
    for (const sub of ['tmp', 'new', 'cur']) await mkdir(join(dir, sub), { recursive: true, mode: 0o700 });
    this.made.add(dir);
  }

  /** Returns the delivered file's path. Throws with the mailbox named when it cannot. */
  async deliver(sourcePath: string, mailbox: string): Promise<string> {
    const dir = this.folder(mailbox);
    try {
      await this.ensure(dir);
      const { size } = await stat(sourcePath);
      const name = uniqueName(size);
      const target = join(dir, 'new', name);
      try {
        await link(sourcePath, target);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK') throw err;
        const tmp = join(dir, 'tmp', name);
        await copyFile(sourcePath, tmp);
        if (this.fsync) await syncPath(tmp);
        await link(tmp, target);
        await unlink(tmp);
      }
      if (this.fsync) await this.syncers.sync(join(dir, 'new'));
      return target;
    } catch (err) {
      this.made.delete(dir);
      throw new Error(`maildir ${dir}: ${(err as Error).message}`, { cause: err });
    }
  }
}
