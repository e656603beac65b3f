/**
 * A private Postfix instance under a temp folder: own config and queue directories, loopback only,
 * one smtpd on a high loopback port, no chroot, `virtual` delivery to a Maildir, log to a file.
 */
import { chmod, chown, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run, waitForGreeting } from './proc.js';

export interface PostfixInstance {
  port: number;
  dir: string;
  /** The `new` folder of the Maildir every test message lands in. */
  maildirNew: string;
  stop(): Promise<void>;
}

export interface PostfixBins {
  postfix: string;
  postconf: string;
}

/** One line per service; chroot column is "n" everywhere. */
function masterCf(port: number): string {
  const rows = [
    `127.0.0.1:${port} inet n - n - 100 smtpd`,
    'pickup unix n - n 60 1 pickup',
    'cleanup unix n - n - 0 cleanup',
    'qmgr unix n - n 300 1 qmgr',
    'rewrite unix - - n - - trivial-rewrite',
    'bounce unix - - n - 0 bounce',
    'defer unix - - n - 0 bounce',
    'trace unix - - n - 0 bounce',
    'verify unix - - n - 1 verify',
    'flush unix n - n 1000? 0 flush',
    'proxymap unix - - n - - proxymap',
    'proxywrite unix - - n - 1 proxymap',
    'smtp unix - - n - - smtp',
    'relay unix - - n - - smtp',
    'showq unix n - n - - showq',
    'error unix - - n - - error',
    'retry unix - - n - - error',
    'discard unix - - n - - discard',
    'local unix - n n - - local',
    'virtual unix - n n - - virtual',
    'lmtp unix - - n - - lmtp',
    'anvil unix - - n - 1 anvil',
    'scache unix - - n - 1 scache',
    'postlog unix-dgram n - n - 1 postlogd',
  ];
  return rows.join('\n') + '\n';
}

async function defaults(postconf: string): Promise<Record<string, string>> {
  const names = ['daemon_directory', 'command_directory', 'shlib_directory', 'meta_directory', 'mail_owner', 'setgid_group'];
  const r = await run(postconf, ['-d', ...names]);
  const out: Record<string, string> = {};
  for (const line of r.stdout.split('\n')) {
    const m = /^(\w+) = (.*)$/.exec(line);
    if (m) out[m[1]] = m[2];
  }
  return out;
}

async function uidGid(user: string): Promise<[number, number]> {
  const u = await run('id', ['-u', user]);
  const g = await run('id', ['-g', user]);
  const uid = Number(u.stdout.trim());
  const gid = Number(g.stdout.trim());
  if (u.code !== 0 || g.code !== 0 || !Number.isInteger(uid) || !Number.isInteger(gid)) {
    throw new Error(`cannot resolve user "${user}": ${u.stderr.trim()}`);
  }
  return [uid, gid];
}

function mainCf(dir: string, d: Record<string, string>, uid: number, gid: number, domain: string): string {
  const p: Record<string, string> = {
    compatibility_level: '3.6',
    config_directory: join(dir, 'etc'),
    queue_directory: join(dir, 'spool'),
    data_directory: join(dir, 'data'),
    ...d,
    myhostname: `postfix.${domain}`,
    mydomain: domain,
    myorigin: '$myhostname',
    mydestination: '',
    inet_interfaces: 'loopback-only',
    inet_protocols: 'ipv4',
    mynetworks: '127.0.0.0/8',
    relayhost: '',
    alias_maps: '',
    alias_database: '',
    maillog_file: join(dir, 'maillog'),
    maillog_file_prefixes: dir,
    virtual_mailbox_domains: domain,
    virtual_mailbox_base: join(dir, 'mail'),
    // `virtual` refuses regexp substitution, and smtp-source sends to one recipient anyway.
    virtual_mailbox_maps: `static:${domain}/user/`,
    virtual_uid_maps: `static:${uid}`,
    virtual_gid_maps: `static:${gid}`,
    virtual_mailbox_limit: '0',
    message_size_limit: String(50 * 1024 * 1024),
    smtpd_client_connection_count_limit: '0',
    smtpd_client_connection_rate_limit: '0',
    biff: 'no',
    append_dot_mydomain: 'no',
  };
  return Object.entries(p).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n';
}

/** Writes the instance under `dir` (new, empty), starts it, waits for its greeting. Mail is stored as `user`. */
export async function startPostfix(bins: PostfixBins, dir: string, port: number, domain: string, user: string): Promise<PostfixInstance> {
  await chmod(dir, 0o755); // postfix and the mailbox owner must traverse it
  const etc = join(dir, 'etc');
  await mkdir(etc);
  await mkdir(join(dir, 'spool'));
  await mkdir(join(dir, 'data'));
  await mkdir(join(dir, 'mail'));
  const d = await defaults(bins.postconf);
  const [pfUid, pfGid] = await uidGid(d.mail_owner ?? 'postfix');
  const [uid, gid] = await uidGid(user);
  await chown(join(dir, 'data'), pfUid, pfGid);
  await chown(join(dir, 'mail'), uid, gid);
  await writeFile(join(etc, 'main.cf'), mainCf(dir, d, uid, gid, domain));
  await writeFile(join(etc, 'master.cf'), masterCf(port));
  const check = await run(bins.postfix, ['-c', etc, 'check'], 30_000);
  if (check.code !== 0) throw new Error(`postfix check failed: ${check.stderr.trim()}`);
  const start = await run(bins.postfix, ['-c', etc, 'start'], 30_000);
  if (start.code !== 0) throw new Error(`postfix start failed: ${start.stderr.trim()}`);
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    const r = await run(bins.postfix, ['-c', etc, 'stop'], 30_000);
    if (r.code !== 0) await run(bins.postfix, ['-c', etc, 'abort'], 15_000);
  };
  if (!(await waitForGreeting(port, 15_000))) {
    await stop();
    throw new Error(`postfix did not answer on 127.0.0.1:${port} (see ${join(dir, 'maillog')})`);
  }
  return { port, dir, maildirNew: join(dir, 'mail', domain, 'user', 'new'), stop };
}
