/**
 * The disk under the bench's temp folder. On an ext4 without a journal (the machines here), a
 * new file skips every inode of its block group freed in the last minutes (the kernel's
 * recently_deleted check), one inode-table lookup each. One server's deletions (Postfix removes
 * each queue file once delivered) then slow the file creation of the next server measured in
 * the same group. Marking the temp folder as a top of directory hierarchy (`chattr +T`) makes
 * ext4 spread its subfolders, one per server, over different groups; bench/maildir.ts keeps
 * the bench's own cleanup from freeing inodes between runs.
 */
import { linkSync, unlinkSync } from 'node:fs';
import { mkdir, readdir } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { MessageWriter } from '../src/queue/message-writer.js';
import { DirSyncer } from '../src/util/fsync.js';
import { run } from './proc.js';

/** Marks `root` with +T where the filesystem supports it; returns whether it did. */
export async function spreadSubfolders(root: string): Promise<boolean> {
  return (await run('chattr', ['+T', root])).code === 0;
}

/** "ext4 on /dev/vda, no journal": what the machine line of the results says of the disk. */
export async function describeDisk(root: string, spread: boolean): Promise<string> {
  const [type = 'unknown filesystem', source = ''] = (await run('findmnt', ['-no', 'FSTYPE,SOURCE', '-T', root])).stdout.trim().split(/\s+/);
  let journal = '';
  if (type.startsWith('ext') && source.startsWith('/dev/')) {
    // Each mounted journal has a folder <device>-<inode> here.
    const journals = await readdir('/proc/fs/jbd2').catch(() => null);
    if (journals) journal = journals.some((j) => j.startsWith(`${basename(source)}-`)) ? ', with a journal' : ', no journal';
  }
  return `data on ${type}${source ? ` (${source}${journal})` : ''}; ${spread ? 'each server in its own folder spread by chattr +T' : 'chattr +T not available: servers may share block groups'}`;
}

export interface DiskCeiling {
  /** Durable writes per second, and the CPU time of this process per write (all threads), in ms. */
  durable: { rate: number; cpuMs: number };
  /** The same steps without the two fsyncs. */
  unsynced: { rate: number; cpuMs: number };
}

/**
 * What this disk allows a 5 KB message's durable 250 outside any server: 20 writers at once,
 * each taking moonpost's own steps (MessageWriter's create and write, fsync, a hard link into a
 * Maildir `new/`, the shared folder fsync), for `seconds`, then the same without the fsyncs.
 * Files stay in `dir` until the bench's temp folder goes (see bench/maildir.ts on freeing inodes).
 */
export async function measureDiskCeiling(dir: string, seconds = 2): Promise<DiskCeiling> {
  const once = async (sub: string, fsync: boolean): Promise<{ rate: number; cpuMs: number }> => {
    const tmp = join(dir, sub, 'tmp');
    const fresh = join(dir, sub, 'new');
    await mkdir(tmp, { recursive: true });
    await mkdir(fresh, { recursive: true });
    const folder = new DirSyncer(fresh, fsync);
    const body = Buffer.alloc(5 * 1024 + 400, 'x');
    let n = 0;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const end = t0 + seconds * 1000;
    const writer = async (w: number): Promise<void> => {
      for (let i = 0; performance.now() < end; i++) {
        const name = `${w}.${i}`;
        const file = new MessageWriter(join(tmp, name));
        file.write([body]);
        await file.finish(fsync);
        linkSync(join(tmp, name), join(fresh, name));
        unlinkSync(join(tmp, name));
        await folder.sync();
        n++;
      }
    };
    await Promise.all(Array.from({ length: 20 }, (_, w) => writer(w)));
    const secs = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    return { rate: n / secs, cpuMs: (cpu.user + cpu.system) / 1000 / n };
  };
  return { durable: await once('durable', true), unsynced: await once('unsynced', false) };
}
