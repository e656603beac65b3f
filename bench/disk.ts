/**
 * The disk under the bench's temp folder. On an ext4 without a journal (the machines here), a
 * new file skips every inode of its block group freed in the last minutes (the kernel's
 * recently_deleted check), one inode-table lookup each. One server's deletions (Postfix removes
 * each queue file once delivered) then slow the file creation of the next server measured in
 * the same group. Marking the temp folder as a top of directory hierarchy (`chattr +T`) makes
 * ext4 spread its subfolders, one per server, over different groups; bench/maildir.ts keeps
 * the bench's own cleanup from freeing inodes between runs.
 */
import { readdir } from 'node:fs/promises';
import { basename } from 'node:path';
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
