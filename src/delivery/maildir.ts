import { copyFile, mkdir, readdir, stat, unlink } from 'node:fs/promises';
import { linkSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { DirSyncers } from '../util/fsync.js';
import { syncPath } from '../util/file-ops.js';
import { QUEUE_ID_SUFFIX } from '../queue/spool.js';

/** How long a `cur/` listing serves recovered messages (see MaildirDelivery.listings). */
const LISTING_TTL_MS = 30_000;

/** The unique part of a name maildirName gave: `M<usec>Q<queue id>`. */
const UNIQUE = /^\d+\.(M\d+Q[0-9A-Za-z]+)\./;

/**
 * Whether `entry` is the message named `name`, as a reader left it: one that takes a message
 * renames it into `cur/` with its flags after a ":" (`:2,S`), and some add fields after a ","
 * first (Dovecot's `,W=<size>`).
 */
function isNamed(entry: string, name: string): boolean {
  return entry === name || (entry.startsWith(name) && (entry[name.length] === ':' || entry[name.length] === ','));
}

// Maildir names must not contain "/" or ":"; the host part is escaped as the spec says.
const host = hostname().replace(/\//g, '\\057').replace(/:/g, '\\072');

/**
 * The one name a queued message has in any Maildir: the time of acceptance (from the queue id,
 * which starts with it) and the queue id itself, unique per server. A second delivery of the
 * same message to the same folder (its first was cut short by a crash before the queue knew)
 * meets the name already there and is not made twice.
 */
export function maildirName(queueId: string, size: number): string {
  const parsed = parseInt(queueId.slice(0, -QUEUE_ID_SUFFIX), 36);
  const now = Number.isSafeInteger(parsed) && parsed > 0 ? parsed : Date.now();
  const secs = Math.floor(now / 1000);
  const usec = (now % 1000) * 1000;
  return `${secs}.M${usec}Q${queueId}.${host},S=${size}`;
}

/**
 * Delivers into Maildir folders (Q2). The queue file is complete and already fsynced, so it
 * is hard-linked straight into `new/` (an atomic, zero-copy step that Maildir readers accept);
 * across filesystems it is copied through `tmp/` instead.
 */
export class MaildirDelivery {
  private readonly made = new Set<string>();
  /**
   * `cur/` listings read for recovered messages, by their unique part. A recovery brings back
   * many messages for one mailbox at once, so a listing serves for a while, not once per message:
   * what it must find was delivered before the restart, so before the listing.
   */
  private readonly listings = new Map<string, { at: number; names: Promise<Map<string, string>> }>();

  constructor(
    readonly mailRoot: string,
    private readonly syncers: DirSyncers,
    private readonly fsync: boolean,
  ) {}

  private listing(cur: string): Promise<Map<string, string>> {
    const now = Date.now();
    const kept = this.listings.get(cur);
    if (kept && now - kept.at < LISTING_TTL_MS) return kept.names;
    const names = readdir(cur).then((entries) => {
      const byUnique = new Map<string, string>();
      for (const entry of entries) {
        const m = UNIQUE.exec(entry);
        if (m) byUnique.set(m[1], entry);
      }
      return byUnique;
    });
    this.listings.set(cur, { at: now, names });
    const forget = (): void => void (this.listings.get(cur)?.names === names && this.listings.delete(cur));
    names.catch(forget);
    setTimeout(forget, LISTING_TTL_MS).unref();
    return names;
  }

  folder(mailbox: string): string {
    return join(this.mailRoot, mailbox);
  }

  private async ensure(dir: string): Promise<void> {
    if (this.made.has(dir)) return;
    for (const sub of ['tmp', 'new', 'cur']) await mkdir(join(dir, sub), { recursive: true, mode: 0o700 });
    this.made.add(dir);
  }

  /**
   * Delivers queued message `queueId` (stored at `sourcePath`, of `knownSize` bytes when the
   * caller knows) and returns the delivered file's path. Throws with the mailbox named when it
   * cannot. A `recovered` message may be there already, in `new/` or, read since, in `cur/`.
   */
  async deliver(sourcePath: string, mailbox: string, queueId: string, knownSize?: number, recovered = false): Promise<string> {
    const dir = this.folder(mailbox);
    try {
      await this.ensure(dir);
      const size = knownSize ?? (await stat(sourcePath)).size;
      const name = maildirName(queueId, size);
      // A copy left in new/ is found by the link below (EEXIST).
      if (recovered) {
        const earlier = (await this.listing(join(dir, 'cur'))).get(UNIQUE.exec(name)![1]);
        if (earlier && isNamed(earlier, name)) return join(dir, 'cur', earlier);
      }
      const target = join(dir, 'new', name);
      try {
        linkOnce(sourcePath, target);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK') throw err;
        const tmp = join(dir, 'tmp', name);
        await copyFile(sourcePath, tmp);
        if (this.fsync) await syncPath(tmp);
        linkOnce(tmp, target);
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

/**
 * A link whose name is taken already is the same message delivered before: done. Made on the
 * event loop (see util/file-ops.ts).
 */
function linkOnce(from: string, to: string): void {
  try {
    linkSync(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
}
