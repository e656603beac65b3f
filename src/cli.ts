import { Command } from 'commander';
import { createInterface } from 'node:readline';
import { loadConfig, ConfigError } from './config/load.js';
import { MoonpostServer, type BoundService } from './server.js';
import type { Config } from './config/schema.js';
import { createLogger } from './log.js';
import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';
import { hashPassword } from './policy/password.js';
import { Spool } from './queue/spool.js';
import { QueueIndex } from './queue/queue-index.js';
import type { Envelope } from './queue/envelope.js';
import { controlRequest } from './admin/control-socket.js';
import { runQueueOp, type QueueRequest, type QueueResponse } from './admin/queue-ops.js';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';

const program = new Command();
program.name('moonpost').description('moonpost: an SMTP mail server scriptable with VPOP3-style Lua hooks');

function configOption(cmd: Command): Command {
  return cmd.option('-c, --config <file>', 'YAML configuration file (embedded defaults when absent)');
}

function load(file: string | undefined) {
  try {
    return loadConfig(file);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`moonpost: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}

/** `workers: N | auto` as a process count. */
function workerCount(workers: Config['workers']): number {
  return workers === 'auto' ? availableParallelism() : workers;
}

configOption(program.command('serve').description('run the SMTP services and local delivery')).action(async (opts: { config?: string }) => {
  if (cluster.isWorker) {
    // A worker forked by the primary below: it gets its configuration from the primary.
    const { runWorker } = await import('./cluster/worker.js');
    await runWorker();
    return;
  }
  const config = load(opts.config);
  const workers = workerCount(config.workers);
  const log = createLogger(config.log.level);
  let server: MoonpostServer;
  let stopServer: () => Promise<void>;
  let reload: () => void;
  let start: () => Promise<BoundService[]>;
  if (workers > 1) {
    const { ClusterPrimary } = await import('./cluster/primary.js');
    const primary = new ClusterPrimary(config, log.child({ role: 'primary' }), workers);
    server = primary.server;
    start = () => primary.start();
    stopServer = () => primary.stop();
    reload = () => primary.reload();
  } else {
    server = new MoonpostServer(config, log);
    start = () => server.start();
    stopServer = () => server.stop();
    reload = () => {
      server.log.info('SIGHUP: reloading scripts');
      void server.scripts.reload();
    };
  }
  let bound;
  try {
    bound = await start();
  } catch (err) {
    process.stderr.write(`moonpost: cannot start: ${(err as Error).message}\n`);
    process.exit(1);
  }
  for (const b of bound) {
    process.stderr.write(`moonpost: service ${b.id} "${b.name}" listening on ${b.address}:${b.port}\n`);
  }
  if (workers > 1) process.stderr.write(`moonpost: ${workers} SMTP worker processes\n`);
  process.stderr.write(`moonpost: local mail is delivered to ${server.mailRoot}/<domain>/<local-part>/ (Maildir)\n`);
  process.stderr.write(`moonpost: queue in ${server.spool.dir}\n`);
  if (server.adminAddress) {
    const a = server.adminAddress;
    const host = a.address.includes(':') ? `[${a.address}]` : a.address;
    process.stderr.write(`moonpost: admin console on ${config.admin?.tls ? 'https' : 'http'}://${host}:${a.port}/ (JSON API under /api)\n`);
  }
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    server.log.info({ signal }, 'shutting down');
    stopServer().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGHUP', reload);
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
});

program
  .command('hash-password')
  .description('print an scrypt hash for a user\'s "password" key (reads the password from stdin)')
  .argument('[password]', 'the password (prefer stdin so it stays out of shell history)')
  .action(async (password?: string) => {
    let pw = password;
    if (pw === undefined) {
      const rl = createInterface({ input: process.stdin });
      pw = await new Promise<string>((res) => rl.once('line', res).once('close', () => res('')));
      rl.close();
    }
    if (!pw) {
      process.stderr.write('moonpost: empty password\n');
      process.exit(2);
    }
    process.stdout.write(`${await hashPassword(pw)}\n`);
  });

program
  .command('check-script')
  .description('check a Lua script for syntax errors (prints FILE:LINE: message, exits 1 on error)')
  .argument('<file>', 'the script, e.g. var/scripts/SMTPSVR.LUA')
  .action(async (file: string) => {
    const { LuaVm } = await import('./script/lua-vm.js');
    const { compileScript } = await import('./script/compile.js');
    let source: Buffer;
    try {
      source = readFileSync(file);
    } catch (err) {
      process.stderr.write(`${file}: cannot read: ${(err as Error).message}\n`);
      process.exit(2);
    }
    const result = compileScript(await LuaVm.create(), source, file);
    if ('error' in result) {
      process.stderr.write(`${result.error}\n`);
      process.exit(1);
    }
    process.stdout.write(`${file}: OK\n`);
  });

const script = program.command('script').description('work with SMTPSVR.LUA scripts');
configOption(
  script
    .command('try')
    .description('run an SMTP dialogue through the session and a script, without opening a port, and print the transcript with every hook call')
    .argument('<script>', 'the script, e.g. var/scripts/SMTPSVR.LUA (require() finds modules beside it)'),
)
  .requiredOption('-t, --transcript <file>', 'the client lines ("-" reads stdin)')
  .option('--ip <addr>', 'client IP address', '127.0.0.1')
  .option('--tls', 'the session starts encrypted')
  .option('--auth <user>', 'the session starts authenticated as this user')
  .option('--service <id>', 'the configured service the session belongs to (default: the first)')
  .option('--data <dir>', 'data folder for the queue (default: a temporary folder, removed afterwards)')
  .addHelpText(
    'after',
    `
Transcript: one client line per line; blank lines are skipped and lines starting with "#"
are comments (echoed). "DATA" is followed by the message lines, sent as written (dot-stuff
them yourself), up to a line holding only "."; "BDAT n [LAST]" by lines making up exactly
n octets (each line counts its CRLF, except when the chunk ends right after its text).

Output: "C:" client line, "S:" reply line, "H: Hook(args) -> results" for every callback
(or "-> error: message", "-> stopped: timeout"), "P:" print() output of the call above,
"L:" server warnings, "Q:"/"M:" a queued message's envelope and stored lines, "--" notes.
Session id, queue ids and the Received date are shown as <SESSION>, <QUEUE-n>, <DATE>.
STARTTLS (when the service offers it) pretends to succeed.
`,
  )
  .action(
    async (file: string, opts: { transcript: string; config?: string; ip: string; tls?: boolean; auth?: string; service?: string; data?: string }) => {
      const { runTranscript, TryError } = await import('./script/script-try.js');
      const { TranscriptError } = await import('./script/try-format.js');
      const { isIP } = await import('node:net');
      if (!isIP(opts.ip)) {
        process.stderr.write(`moonpost: --ip: "${opts.ip}" is not an IP address\n`);
        process.exit(2);
      }
      const serviceId = opts.service === undefined ? undefined : Number(opts.service);
      if (serviceId !== undefined && !Number.isInteger(serviceId)) {
        process.stderr.write(`moonpost: --service: "${opts.service}" is not a service id\n`);
        process.exit(2);
      }
      let transcript: Buffer;
      try {
        transcript = opts.transcript === '-' ? readFileSync(0) : readFileSync(opts.transcript);
      } catch (err) {
        process.stderr.write(`${opts.transcript}: cannot read: ${(err as Error).message}\n`);
        process.exit(2);
      }
      const config = load(opts.config);
      try {
        const out = await runTranscript({ script: file, transcript, config, dataDir: opts.data, ip: opts.ip, tls: opts.tls, authUser: opts.auth, serviceId });
        process.stdout.write(out);
      } catch (err) {
        if (err instanceof TranscriptError) {
          process.stderr.write(`${opts.transcript}: ${err.message}\n`);
          process.exit(2);
        }
        if (err instanceof TryError) {
          process.stderr.write(`${err.message}\n`);
          process.exit(1);
        }
        throw err;
      }
    },
  );

const queue = program.command('queue').description('inspect and manage the mail queue (through the running server when there is one)');

/** Runs a queue command in the running server, or on the files when none is running. */
async function queueOp(configFile: string | undefined, req: QueueRequest): Promise<QueueResponse> {
  const config = load(configFile);
  const viaServer = await controlRequest(join(config.dataDir, 'control.sock'), req).catch(() => null);
  if (viaServer) return viaServer;
  const index = new QueueIndex(new Spool(config.dataDir));
  for (const env of await index.spool.list()) index.add(env);
  return runQueueOp(index, req);
}

function printEnvelope(env: Envelope): void {
  process.stdout.write(`${env.id}  ${env.size} bytes  ${env.received}  <${env.sender}>${env.hold ? '  (held)' : ''}\n`);
  for (const r of env.recipients) {
    const where = r.route.kind === 'local' ? `local ${r.route.mailbox}` : 'relay';
    const next = r.state === 'pending' && r.nextAttempt ? `  next ${new Date(r.nextAttempt).toISOString()}` : '';
    process.stdout.write(`    ${r.state.padEnd(9)} <${r.address}> (${where})${next}${r.lastError ? `  ${r.lastError}` : ''}\n`);
  }
}

function fail(res: QueueResponse): res is { ok: false; error: string } {
  if (res.ok) return false;
  process.stderr.write(`moonpost: ${res.error}\n`);
  process.exitCode = 1;
  return true;
}

configOption(queue.command('list').description('list queued messages and their recipients'))
  .option('--json', 'print JSON')
  .action(async (opts: { config?: string; json?: boolean }) => {
    const res = await queueOp(opts.config, { op: 'list' });
    if (fail(res)) return;
    const list = res.envelopes ?? [];
    if (opts.json) {
      process.stdout.write(JSON.stringify(list, null, 2) + '\n');
      return;
    }
    if (!list.length) {
      process.stdout.write(`queue is empty (${join(load(opts.config).dataDir, 'queue')})\n`);
      return;
    }
    for (const env of list) printEnvelope(env);
    process.stdout.write(`${list.length} message(s)\n`);
  });

configOption(queue.command('show').description('show one message: envelope, recipients, header').argument('<id>', 'queue id')).action(
  async (id: string, opts: { config?: string }) => {
    const res = await queueOp(opts.config, { op: 'show', id });
    if (fail(res)) return;
    printEnvelope(res.envelopes![0]);
    process.stdout.write(`\n${(res.header ?? []).join('\n')}\n`);
  },
);

for (const [op, what] of [
  ['retry', 'try now what waits for a retry (an id, or --all)'],
  ['hold', 'keep a message from delivery until released (an id, or --all)'],
  ['release', 'let a held message go again (an id, or --all)'],
  ['delete', 'remove a message from the queue without delivering or bouncing it'],
  ['bounce', 'fail the pending recipients now and send the sender a DSN (running server only)'],
] as const) {
  const single = op === 'delete' || op === 'bounce';
  const cmd = configOption(queue.command(op).description(what).argument('[id]', 'queue id'));
  if (!single) cmd.option('--all', 'every queued message');
  if (op === 'bounce') cmd.option('--reason <text>', 'the failure text in the DSN');
  cmd.action(async (id: string | undefined, opts: { config?: string; all?: boolean; reason?: string }) => {
    const target = opts.all ? 'all' : id;
    if (!target) {
      process.stderr.write(`moonpost: queue ${op} needs an id${single ? '' : ' or --all'}\n`);
      process.exitCode = 2;
      return;
    }
    const res = await queueOp(opts.config, { op, id: target, reason: opts.reason });
    if (fail(res)) return;
    process.stdout.write(`${op}: ${(res.changed ?? []).join(' ') || 'nothing'}\n`);
  });
}

await program.parseAsync(process.argv);
