import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { pino } from 'pino';
import type { Config } from '../config/schema.js';
import { loadConfig } from '../config/load.js';
import { Directory } from '../policy/directory.js';
import { NetworkList, normalizeIp } from '../policy/cidr.js';
import { Spool } from '../queue/spool.js';
import type { MessageWriter } from '../queue/message-writer.js';
import type { ClientInfo, ServiceContext, SessionIO } from '../smtp/context.js';
import { formatReply, reply, type Reply } from '../smtp/reply.js';
import { Session } from '../smtp/session.js';
import { compileScript, type CompiledScript } from './compile.js';
import { policyServices } from '../policy/services.js';
import { ScriptHost } from './script-host.js';
import { formatLogLine, formatQueued, normalise, parseTranscript, renderCall, type TranscriptStep } from './try-format.js';

/**
 * `moonpost script try`: runs a transcript of client lines through the real Session and a
 * script, with no socket, and prints every reply, hook call and `print` line. Output lines:
 *   `# ...` comments of the transcript   `C:` client line        `S:` server reply line
 *   `H:` hook call and its results       `P:` print() output      `L:` server warning
 *   `Q:` a message committed to the queue, `M:` its stored lines  `--` what the bench did
 * Session id, queue ids and the Received date are replaced by placeholders, so a transcript
 * prints the same text on every run (golden tests compare it exactly).
 */

/** What the pretend STARTTLS handshake and `--tls` report as the session's encryption. */
export const TLS_DETAILS = 'version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384';

export interface TryOptions {
  /** Path of the script (SMTPSVR.LUA); `require` finds modules in its folder. */
  script: string;
  /** The transcript's bytes. */
  transcript: Buffer;
  /** Default: the embedded defaults of `loadConfig()`. */
  config?: Config;
  /** Data folder for the queue; default a temporary folder, removed afterwards. */
  dataDir?: string;
  /** Client address; default 127.0.0.1. */
  ip?: string;
  /** The session starts encrypted. */
  tls?: boolean;
  /** The session starts authenticated as this user. */
  authUser?: string;
  /** Which configured service the session belongs to; default the first. */
  serviceId?: number;
}

/** The script does not compile, or the options are unusable: nothing was run. */
export class TryError extends Error {
  override name = 'TryError';
}

/** The queue, noting each queue id as it is handed out (for the placeholders). */
class RecordingSpool extends Spool {
  readonly ids: string[] = [];
  override create(id: string): MessageWriter {
    this.ids.push(id);
    return super.create(id);
  }
}

/** The transcript side of a session: replies become `S:` lines; TLS is only pretended. */
class TranscriptIO implements SessionIO {
  closed = false;
  private paused = false;
  private waiters: (() => void)[] = [];

  constructor(private readonly out: (line: string) => void) {}

  send(r: Reply): void {
    for (const line of formatReply(r).split('\r\n').slice(0, -1)) this.out(`S: ${line}`);
  }

  async startTls(): Promise<string> {
    this.out(`-- TLS handshake (simulated): ${TLS_DETAILS}`);
    return TLS_DETAILS;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.out('-- the server closed the connection');
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves once the session is reading again (its message writer caught up). */
  ready(): Promise<void> {
    return this.paused ? new Promise((res) => this.waiters.push(res)) : Promise.resolve();
  }

  setPhase(): void {
    /* no timeouts in a transcript */
  }
}

/** Compiles the script; a syntax error is a TryError with `FILE:LINE: message`. */
async function compile(host: ScriptHost, path: string): Promise<CompiledScript> {
  let source: Buffer;
  try {
    source = await readFile(path);
  } catch (err) {
    throw new TryError(`${path}: cannot read: ${(err as Error).message}`);
  }
  const result = compileScript(await host.openVm(), source, path);
  if ('error' in result) throw new TryError(result.error);
  return { ...result, version: 1 };
}

/** Runs the transcript and returns the printed transcript (LF line endings). */
export async function runTranscript(opts: TryOptions): Promise<string> {
  const steps = parseTranscript(opts.transcript);
  const config: Config = structuredClone(opts.config ?? loadConfig());
  const service = opts.serviceId === undefined ? config.services[0] : config.services.find((s) => s.id === opts.serviceId);
  if (!service) throw new TryError(`no service with id ${opts.serviceId} in the configuration`);
  config.scripts.dir = dirname(resolve(opts.script));

  const lines: string[] = [];
  let prints: string[] = [];
  // "C:" rather than "C: " for an empty line: no trailing blanks in golden files.
  const out = (line: string): void => {
    lines.push(/^[A-Z]: $/.test(line) ? line.slice(0, -1) : line);
  };
  // print() runs inside a callback whose trace comes after it: its lines follow that H: line.
  const flushPrints = (): void => {
    for (const p of prints) for (const l of p.split(/\r?\n/)) out(`P: ${l}`);
    prints = [];
  };
  const log = pino(
    { level: 'warn', base: null, timestamp: false },
    {
      write: (s: string) => {
        flushPrints(); // printed before the warning (a failing main chunk)
        const line = formatLogLine(s);
        if (line) out(line);
      },
    },
  );
  const host = new ScriptHost(config, log);
  host.printSink = (text) => prints.push(text);
  const script = await compile(host, opts.script);
  const dataDir = opts.dataDir ? resolve(opts.dataDir) : await mkdtemp(join(tmpdir(), 'moonpost-try-'));
  config.dataDir = dataDir;
  const spool = new RecordingSpool(dataDir, false);

  try {
    await spool.init();
    const ctx: ServiceContext = {
      config,
      service,
      directory: new Directory(config),
      relayNetworks: new NetworkList(config.relay.networks),
      proxyTrusted: new NetworkList([]),
      ...policyServices(config),
      spool,
      log,
      onQueued: (env) => {
        for (const line of formatQueued(env, readFileSync(spool.messagePath(env.id)))) out(line);
      },
      hooksFor: (policy, facts, sessionLog) => {
        const hooks = host.hooksForScript(script, policy, facts, sessionLog);
        flushPrints(); // the main chunk's
        if (hooks) {
          hooks.trace = ({ hook, args, result }) => {
            out(`H: ${renderCall(hook, args, result)}`);
            flushPrints();
          };
        }
        return hooks;
      },
    };
    const client: ClientInfo = { ip: normalizeIp(opts.ip ?? '127.0.0.1'), port: 0 };
    if (opts.tls) client.tls = TLS_DETAILS;
    const io = new TranscriptIO(out);
    const session = new Session(ctx, io, client);
    if (opts.authUser) session.authUser = opts.authUser;
    // Comments at the top describe the case: they come before the greeting.
    const lead = steps.findIndex((s) => s.kind !== 'comment');
    for (const s of steps.slice(0, lead < 0 ? steps.length : lead)) if (s.kind === 'comment') out(s.text);
    await session.greet();
    await feed(session, io, lead < 0 ? [] : steps.slice(lead), out);
    if (!io.closed) out('-- the client closed the connection');
    session.closed = true;
    await session.abort('end of transcript');
    flushPrints();
    return normalise(lines.join('\n') + '\n', session.id, spool.ids);
  } finally {
    host.stop();
    if (!opts.dataDir) await rm(dataDir, { recursive: true, force: true });
  }
}

/** Feeds the steps to the session as src/smtp/connection.ts feeds socket input. */
async function feed(session: Session, io: TranscriptIO, steps: TranscriptStep[], out: (line: string) => void): Promise<void> {
  const command = async (line: string): Promise<void> => {
    await io.ready();
    // As Connection: a line over the limit (octets without CRLF) is refused without being parsed.
    if (Buffer.byteLength(line) > session.maxLineLength) return session.lineTooLong();
    try {
      await session.command(line);
    } catch (err) {
      session.log.error({ err: (err as Error).message }, 'session error');
      io.send(reply(421, '4.3.0', 'Local error, closing connection'));
      io.close();
    }
  };
  for (const [n, step] of steps.entries()) {
    if (io.closed && step.kind !== 'comment') {
      const left = steps.slice(n).filter((s) => s.kind !== 'comment').length;
      out(`-- ${left} more transcript step(s) not sent`);
      return;
    }
    if (step.kind === 'comment') {
      out(step.text);
      continue;
    }
    out(`C: ${step.line}`);
    await command(step.line);
    if (step.kind === 'data') {
      if (session.mode !== 'data') {
        if (step.lines.length || step.terminated) out(`-- DATA not accepted: ${step.lines.length} message line(s) and "." not sent`);
        continue;
      }
      for (const line of step.lines) {
        if (io.closed) break;
        out(`C: ${line.toString('utf8')}`);
        await io.ready();
        session.data(Buffer.concat([line, Buffer.from('\r\n')]), 0);
      }
      if (!step.terminated || io.closed) continue;
      out('C: .');
      await io.ready();
      if (session.data(Buffer.from('.\r\n'), 0) >= 0) await session.endData();
      else out('-- the session did not take "." as the end of the message');
    } else if (step.kind === 'bdat') {
      for (const line of step.lines) out(`C: ${line.toString('utf8')}`);
      if (io.closed) continue;
      let off = 0;
      while (off < step.chunk.length && session.mode === 'bdat' && !io.closed) {
        await io.ready();
        const end = Math.min(step.chunk.length, off + session.bdatNeeded);
        session.bdat(step.chunk, off, end);
        off = end;
        if (session.bdatNeeded === 0) await session.endBdatChunk();
      }
      if (off < step.chunk.length && !io.closed) {
        // As on a socket, octets the session did not take as chunk data are read as commands.
        out(`-- the session did not read ${step.chunk.length - off} octet(s) of the chunk; they are sent as command lines`);
        for (const line of step.chunk.subarray(off).toString('utf8').split(/\r?\n/).filter((l, i, a) => l !== '' || i < a.length - 1)) {
          if (io.closed) break;
          out(`C: ${line}`);
          await command(line);
        }
      }
    }
  }
}
