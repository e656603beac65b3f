import { mkdir, open, readdir, readFile, rm, unlink } from 'node:fs/promises';
import { closeSync, openSync, readFileSync, renameSync, unlinkSync } from 'node:fs';
import { join, sep } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Envelope } from './envelope.js';
import { MessageWriter } from './message-writer.js';
import { DirSyncer } from '../util/fsync.js';
import { fsyncFd, unlinkQuietly, writeAllNow } from '../util/file-ops.js';

let counter = 0;
const nodeTag = randomBytes(2).toString('hex');

/** What follows the time in a queue id: a counter (4) and the process's tag (4). */
export const QUEUE_ID_SUFFIX = 8;

/** Queue ids start with the time of acceptance (ms, base 36), so they sort by it; unique across restarts. */
export function newQueueId(): string {
  counter = (counter + 1) % 0x100000;
  return `${Date.now().toString(36).toUpperCase()}${counter.toString(36).toUpperCase().padStart(4, '0')}${nodeTag.toUpperCase()}`;
}

/** Envelope files a process keeps for reuse (see Spool). */
const POOL_MAX = 256;

/**
 * The durable queue folder. A message is two files: `<id>.msg` (its bytes) and `<id>.env`
 * (its envelope). The envelope is written last; its presence is the commit (Q1), so a crash
 * before it leaves only an orphan `.msg`, removed at recovery and never acknowledged.
 *
 * A settled message's envelope file is not deleted but moved aside, and the next commit
 * of this process rewrites it and moves it back under its new name. Each message would
 * otherwise free one inode and take another: on ext4 without a journal every new file then
 * steps over each inode freed in the last 30 s or so (`recently_deleted`), a cost that grows
 * with the mail rate. Spare files (in `queue-spare/`) are this process's alone, named by its tag;
 * recovery and the rescan of a dead worker remove the rest.
 */
export class Spool {
  readonly dir: string;
  /** Beside the queue folder, on the same filesystem, so a rename moves a file in and out. */
  private readonly spareDir: string;
  private readonly dirSync: DirSyncer;
  private readonly spares: string[] = [];
  private spareCount = 0;

  constructor(
    dataDir: string,
    readonly fsync = true,
  ) {
    this.dir = join(dataDir, 'queue');
    this.spareDir = join(dataDir, 'queue-spare');
    this.dirSync = new DirSyncer(this.dir, fsync);
  }

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    await mkdir(this.spareDir, { recursive: true });
  }

  /** Removes spare envelope files: those of a dead process (by its tag), or all at startup. */
  async dropSpares(tag?: string): Promise<void> {
    const dir = this.spareDir;
    if (tag === undefined) {
      await rm(dir, { recursive: true, force: true });
      await mkdir(dir, { recursive: true });
      return;
    }
    const prefix = `${tag.toLowerCase()}-`;
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (name.startsWith(prefix)) await unlink(join(dir, name)).catch(() => undefined);
    }
  }

  // Plain concatenation: this.dir is normalized once, and several of these run per message.
  messagePath(id: string): string {
    return `${this.dir}${sep}${id}.msg`;
  }

  private envPath(id: string): string {
    return `${this.dir}${sep}${id}.env`;
  }

  /** Starts a message file; nothing is queued until `commit`. */
  create(id: string): MessageWriter {
    return new MessageWriter(this.messagePath(id));
  }

  /** Makes the message durable: its bytes, then its envelope, then the folder entry. */
  async commit(env: Envelope, writer: MessageWriter): Promise<void> {
    await writer.finish(this.fsync);
    await this.commitEnvelope(env);
  }

  /**
   * Commits a message whose file is already complete and durable (rewritten, or a copy). The
   * small steps run on the event loop, the fsyncs through the pool (util/file-ops.ts).
   */
  async commitEnvelope(env: Envelope): Promise<void> {
    const spare = this.spares.pop();
    if (spare === undefined) await this.writeEnvelope(this.envPath(env.id), 'wx', env);
    else {
      try {
        await this.writeEnvelope(spare, 'w', env);
        renameSync(spare, this.envPath(env.id));
      } catch (err) {
        unlinkQuietly(spare);
        throw err;
      }
    }
    await this.dirSync.sync();
  }

  private async writeEnvelope(path: string, flags: 'w' | 'wx', env: Envelope): Promise<void> {
    const fd = openSync(path, flags, 0o600);
    try {
      writeAllNow(fd, [Buffer.from(JSON.stringify(env) + '\n')]);
      if (this.fsync) await fsyncFd(fd);
    } finally {
      closeSync(fd);
    }
  }

  /**
   * A new message file made from a stored one: `prefix` (our Return-Path and extra header
   * lines, written in UTF-8 as the original's Return-Path is) then the source from `from` on. Fsynced; commit it with `commitEnvelope`.
   */
  async writeCopy(sourceId: string, id: string, prefix: string, from: number): Promise<number> {
    const src = await open(this.messagePath(sourceId), 'r');
    const dst = await open(this.messagePath(id), 'wx', 0o600).catch(async (err: unknown) => {
      await src.close();
      throw err;
    });
    try {
      let size = (await dst.write(Buffer.from(prefix, 'utf8'))).bytesWritten;
      const chunk = Buffer.alloc(256 * 1024);
      for (let pos = from; ; ) {
        const { bytesRead } = await src.read(chunk, 0, chunk.length, pos);
        if (!bytesRead) break;
        await dst.write(chunk.subarray(0, bytesRead));
        pos += bytesRead;
        size += bytesRead;
      }
      if (this.fsync) await dst.sync();
      return size;
    } finally {
      await src.close();
      await dst.close();
    }
  }

  /** Replaces an envelope atomically (delivery progress). */
  async update(env: Envelope): Promise<void> {
    const tmp = `${this.envPath(env.id)}.tmp`;
    await this.writeEnvelope(tmp, 'w', env);
    renameSync(tmp, this.envPath(env.id));
  }

  /** Removes a settled message: envelope first, so a crash leaves at worst an orphan file. On the event loop. */
  async remove(id: string): Promise<void> {
    if (this.spares.length < POOL_MAX) {
      const spare = join(this.spareDir, `${nodeTag}-${(this.spareCount++).toString(36)}`);
      renameSync(this.envPath(id), spare);
      this.spares.push(spare);
    } else unlinkSync(this.envPath(id));
    // Removed before (a delivery that ended twice) or never there: nothing to do.
    unlinkQuietly(this.messagePath(id));
  }

  async read(id: string): Promise<Envelope> {
    return JSON.parse(await readFile(this.envPath(id), 'utf8')) as Envelope;
  }

  /**
   * Every committed envelope, after removing what was never acknowledged: message files
   * without an envelope, envelopes that do not parse (an unfinished write) and temp files.
   */
  async recover(): Promise<{ envelopes: Envelope[]; removed: string[] }> {
    await this.dropSpares();
    const names = await readdir(this.dir);
    const envIds = new Set<string>();
    const envelopes: Envelope[] = [];
    const removed: string[] = [];
    // Synchronous reads: recovery runs before anything else is served, and one read of a small
    // file costs microseconds, where an asynchronous one costs several thread-pool round trips.
    for (const name of names) {
      if (!name.endsWith('.env')) continue;
      const id = name.slice(0, -4);
      try {
        envelopes.push({ ...(JSON.parse(readFileSync(this.envPath(id), 'utf8')) as Envelope), recovered: true });
        envIds.add(id);
      } catch {
        await unlink(join(this.dir, name)).catch(() => undefined);
        removed.push(name);
      }
    }
    for (const name of names) {
      const orphan = (name.endsWith('.msg') && !envIds.has(name.slice(0, -4))) || name.endsWith('.tmp') || name.endsWith('.rewrite');
      if (orphan) {
        await unlink(join(this.dir, name)).catch(() => undefined);
        removed.push(name);
      }
    }
    envelopes.sort((a, b) => (a.id < b.id ? -1 : 1));
    return { envelopes, removed };
  }

  /** Read-only listing for `moonpost queue list`. */
  async list(): Promise<Envelope[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return [];
    }
    const out: Envelope[] = [];
    for (const name of names.filter((n) => n.endsWith('.env')).sort()) {
      try {
        out.push(await this.read(name.slice(0, -4)));
      } catch {
        /* being written or removed right now */
      }
    }
    return out;
  }
}
