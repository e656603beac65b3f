/**
 * Fuzzing of the SMTP session's command dispatch (src/smtp/session.ts), driven as
 * src/smtp/connection.ts drives it but through a fake SessionIO: random client input (valid
 * and mutated commands, NUL bytes, invalid UTF-8, huge lines, DATA and BDAT bodies, AUTH
 * exchanges, STARTTLS) cut into random chunks. Invariants: the session never throws or
 * rejects; it greets with 220; every reply is well-formed wire text (no bare CR/LF, no line
 * over 512 octets, one code per reply); each command line gets its answer before the next is
 * read (except BDAT, answered after its chunk); nothing is sent after the connection closes,
 * and 221/421 close it; an aborted session leaves no message file behind.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { scryptSync } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { pino } from 'pino';
import { validateConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { Directory } from '../../src/policy/directory.js';
import { NetworkList } from '../../src/policy/cidr.js';
import { policyServices } from '../../src/policy/services.js';
import { Spool } from '../../src/queue/spool.js';
import type { ClientInfo, ServiceContext, SessionIO } from '../../src/smtp/context.js';
import { formatReply, type Reply } from '../../src/smtp/reply.js';
import { Session, type SessionMode } from '../../src/smtp/session.js';
import { checkWireReply, hostileString, mutateString, params } from './fuzz-common.js';

// ---- the server side -------------------------------------------------------------------------

/** A cheap scrypt hash (N=16) of "secret": AUTH exchanges cost nothing. */
function cheapHash(password: string): string {
  const salt = Buffer.from('fuzzsaltfuzzsalt');
  const key = scryptSync(password, salt, 32, { N: 16, r: 1, p: 1 });
  return `$scrypt$N=16,r=1,p=1$${salt.toString('base64')}$${key.toString('base64')}`;
}

let dataDir = '';
let spool: Spool;
const contexts: ServiceContext[] = [];
const LINE_LENGTH = 600;

function context(variant: number): ServiceContext {
  const config: Config = validateConfig(
    {
      hostname: 'mx.fuzz.test',
      dataDir,
      services: [
        {
          id: 0,
          name: 'smtp',
          listen: '127.0.0.1',
          port: 2525,
          tls: 'starttls',
          cert: '/nonexistent/cert.pem',
          key: '/nonexistent/key.pem',
          authWithoutTls: variant !== 2,
          auth: variant === 1,
        },
      ],
      domains: [{ name: 'fuzz.test', catchAll: variant === 2 }, 'local.test'],
      users: [{ name: 'alice', password: cheapHash('secret'), cramSecret: 'cram', addresses: ['alice@fuzz.test'] }],
      aliases: { 'list@fuzz.test': ['alice@fuzz.test', 'bob@remote.test'] },
      relay: { networks: ['127.0.0.1/32'], mode: variant === 1 ? 'auth' : 'either' },
      limits: {
        messageSize: variant === 0 ? 4000 : 0,
        recipients: 4,
        lineLength: LINE_LENGTH,
        errors: variant === 2 ? 3 : 20,
        messagesPerSession: variant === 2 ? 1 : 0,
        authFailures: { free: 1_000_000, block: 1_000_000, delayMs: 0, maxDelayMs: 0 },
      },
      batv: { enabled: variant === 2, keys: [{ id: 1, secret: 'batv-secret' }] },
      monitorBcc: variant === 0 ? 'monitor@fuzz.test' : '',
      queue: { fsync: false },
    },
    'fuzz',
  );
  return {
    config,
    service: config.services[0],
    directory: new Directory(config),
    relayNetworks: new NetworkList(config.relay.networks),
    proxyTrusted: new NetworkList([]),
    ...policyServices(config),
    spool,
    log: pino({ level: 'silent' }),
    onQueued: () => undefined,
  };
}

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'moonpost-fuzz-session-'));
  spool = new Spool(dataDir, false);
  await spool.init();
  for (let v = 0; v < 3; v++) contexts.push(context(v));
});

after(async () => {
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

/** The transport side: checks every reply as it is sent. */
class FuzzIO implements SessionIO {
  closed = false;
  replies: Reply[] = [];
  problems: string[] = [];

  constructor(private readonly tlsWorks: boolean) {}

  send(r: Reply): void {
    if (this.closed) this.problems.push(`reply after close: ${JSON.stringify(r)}`);
    const wire = formatReply(r);
    const problem = checkWireReply(wire, r.code);
    if (problem) this.problems.push(`${problem}: ${JSON.stringify(wire)}`);
    if (r.code < 200 || r.code > 599) this.problems.push(`reply code ${r.code}`);
    this.replies.push(r);
  }

  startTls(): Promise<string> {
    return this.tlsWorks ? Promise.resolve('version=TLSv1.3 cipher=FUZZ') : Promise.reject(new Error('handshake failed'));
  }

  close(): void {
    this.closed = true;
  }

  pause(): void {}
  resume(): void {}
  setPhase(): void {}
}

/**
 * Feeds the input to the session in the given chunks as Connection.step does: command lines
 * (over-long ones refused unread), DATA bytes up to the end of data, BDAT chunks.
 */
async function drive(session: Session, io: FuzzIO, input: Buffer, cuts: number[]): Promise<void> {
  let buf: Buffer = Buffer.alloc(0);
  let off = 0;
  let discardingLongLine = false;
  const bounds = [0, ...cuts, input.length];
  const check = (what: string, before: number): void => {
    // A command line is answered before the next one is read, unless it started a BDAT chunk.
    if (!io.closed && session.mode === 'command' && io.replies.length === before) io.problems.push(`no reply to ${what}`);
  };
  for (let c = 0; c < bounds.length - 1 && !io.closed; c++) {
    const chunk = input.subarray(bounds[c], bounds[c + 1]);
    buf = off >= buf.length ? chunk : Buffer.concat([buf.subarray(off), chunk]);
    off = 0;
    while (!io.closed && off < buf.length) {
      if (session.mode === 'data') {
        const end = session.data(buf, off);
        if (end < 0) {
          off = buf.length;
          break;
        }
        assert.ok(end > off && end <= buf.length, `end of data ${end} outside ${off}..${buf.length}`);
        off = end;
        const before = io.replies.length;
        await session.endData();
        check('the end of data', before);
        continue;
      }
      if (session.mode === 'bdat') {
        const n = Math.min(session.bdatNeeded, buf.length - off);
        session.bdat(buf, off, off + n);
        off += n;
        if (session.bdatNeeded === 0) {
          const before = io.replies.length;
          await session.endBdatChunk();
          if (!io.closed && io.replies.length === before) io.problems.push('no reply to a BDAT chunk');
        }
        continue;
      }
      const lf = buf.indexOf(10, off);
      const max = session.maxLineLength + 2;
      if (lf < 0) {
        if (buf.length - off > max) {
          const before = io.replies.length;
          if (!discardingLongLine) {
            session.lineTooLong();
            check('a line too long', before);
          }
          discardingLongLine = true;
          off = buf.length;
        }
        break;
      }
      const start = off;
      off = lf + 1;
      if (discardingLongLine) {
        discardingLongLine = false;
        continue;
      }
      const end = lf > start && buf[lf - 1] === 13 ? lf - 1 : lf;
      const before = io.replies.length;
      if (end - start > session.maxLineLength) {
        session.lineTooLong();
        check('a line too long', before);
        continue;
      }
      const line = buf.toString('utf8', start, end);
      await session.command(line);
      // (The command may have switched the mode, which TypeScript cannot see.)
      if ((session.mode as SessionMode) !== 'bdat') check(JSON.stringify(line.length > 200 ? `${line.slice(0, 200)}...` : line), before);
    }
  }
}

// ---- the client side -------------------------------------------------------------------------

const b64 = (s: string): string => Buffer.from(s).toString('base64');

const address = fc.constantFrom(
  'alice@fuzz.test', 'list@fuzz.test', 'nobody@fuzz.test', 'postmaster', 'Postmaster@local.test', 'bob@remote.test',
  'a%b@fuzz.test', '"a@b"@fuzz.test', 'x!y@fuzz.test', 'ü@fuzz.test', 'user@[127.0.0.1]', 'prvs=1234567890=x@fuzz.test', '',
);

const command: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('EHLO client.test', 'HELO client.test', 'ehlo [192.0.2.1]', 'EHLO', 'HELO a b', 'RSET', 'NOOP', 'HELP', 'DATA', 'STARTTLS', 'VRFY alice', 'EXPN list@fuzz.test', 'EXPN', 'QUIT', 'RSET x', 'DATA x', 'NOOP x'),
  fc.tuple(address, fc.constantFrom('', ' SIZE=100', ' SIZE=99999999', ' BODY=8BITMIME', ' SMTPUTF8', ' RET=HDRS ENVID=x', ' AUTH=<>', ' X=Y')).map(([a, p]) => `MAIL FROM:<${a}>${p}`),
  fc.tuple(address, fc.constantFrom('', ' NOTIFY=SUCCESS', ' ORCPT=rfc822;a+40b', ' NOTIFY=NEVER,DELAY')).map(([a, p]) => `RCPT TO:<${a}>${p}`),
  fc.constantFrom('AUTH PLAIN', `AUTH PLAIN ${b64('\0alice\0secret')}`, `AUTH PLAIN ${b64('\0alice\0wrong')}`, 'AUTH LOGIN', `AUTH LOGIN ${b64('alice')}`, 'AUTH CRAM-MD5', 'AUTH XYZ', 'AUTH', 'AUTH PLAIN = x'),
  fc.constantFrom(b64('alice'), b64('secret'), b64('\0alice\0secret'), '*', '=', '!!!', b64('alice 0123456789abcdef0123456789abcdef')),
);

const soup = fc.string({ unit: fc.constantFrom('a', ' ', '.', '\r', '\n', '\r\n', '\r\n.', '-', 'é', '\0', 'Subject: x\r\n', 'Content-Type: multipart/mixed; boundary=b\r\n', '--b\r\n'), maxLength: 40 });

/** One piece of client input, as bytes. */
const step: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 8, arbitrary: command.map((c) => `${c}\r\n`) },
  { weight: 4, arbitrary: mutateString(command).map((c) => `${c}\r\n`) },
  { weight: 2, arbitrary: hostileString(60).map((s) => `${s}\r\n`) },
  { weight: 1, arbitrary: command.map((c) => `${c}\n`) },
  { weight: 2, arbitrary: fc.tuple(soup, fc.constantFrom('\r\n.\r\n', '\n.\n', '\r\n.\n', '')).map(([body, end]) => `DATA\r\n${body}${end}`) },
  { weight: 2, arbitrary: fc.tuple(soup, fc.boolean(), fc.integer({ min: -2, max: 2 })).map(([body, last, skew]) => `BDAT ${Math.max(0, Buffer.byteLength(body) + skew)}${last ? ' LAST' : ''}\r\n${body}`) },
  { weight: 1, arbitrary: fc.constantFrom('BDAT 0 LAST\r\n', 'BDAT x\r\n', 'BDAT 999999999999999\r\n', 'BDAT 3 last\r\nabc') },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('a', 'é', '\0', ' '), fc.integer({ min: 500, max: 1400 }), fc.constantFrom('\r\n', '', '\n')).map(([c, n, e]) => `NOOP ${c.repeat(n)}${e}`) },
).map((s) => Buffer.from(s, 'utf8'));

const rawStep = fc.uint8Array({ minLength: 1, maxLength: 40 }).map((u) => Buffer.concat([Buffer.from(u), Buffer.from('\r\n')]));

const session = fc.record({
  steps: fc.array(fc.oneof({ weight: 9, arbitrary: step }, { weight: 1, arbitrary: rawStep }), { minLength: 1, maxLength: 25 }),
  cuts: fc.array(fc.nat(), { maxLength: 12 }),
  variant: fc.integer({ min: 0, max: 2 }),
  ip: fc.constantFrom('127.0.0.1', '192.0.2.7', '::1'),
  tlsWorks: fc.boolean(),
  preface: fc.constantFrom('', 'EHLO client.test\r\n', `EHLO client.test\r\nAUTH PLAIN ${b64('\0alice\0secret')}\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<alice@fuzz.test>\r\n`),
});

async function runSession(s: { steps: Buffer[]; cuts: number[]; variant: number; ip: string; tlsWorks: boolean; preface: string }): Promise<void> {
  const io = new FuzzIO(s.tlsWorks);
  const client: ClientInfo = { ip: s.ip, port: 40000 };
  const sess = new Session(contexts[s.variant], io, client);
  await sess.greet();
  assert.equal(io.replies[0]?.code, 220, 'greeting');
  const input = Buffer.concat([Buffer.from(s.preface), ...s.steps]);
  const raw = s.cuts.map((c) => 1 + (c % Math.max(1, input.length - 1)));
  const cuts = [...new Set(raw)].filter((c) => c < input.length).sort((a, b) => a - b);
  await drive(sess, io, input, cuts);
  for (const [i, r] of io.replies.entries()) {
    if ((r.code === 221 || r.code === 421) && i !== io.replies.length - 1) io.problems.push(`reply after ${r.code}`);
  }
  const last = io.replies[io.replies.length - 1];
  if (last && (last.code === 221 || last.code === 421)) assert.ok(io.closed, `${last.code} closes the connection`);
  sess.closed = true;
  await sess.abort('end of fuzz input');
  assert.deepEqual(io.problems, []);
}

test('fuzz Session: random client input is always answered with well-formed replies', async () => {
  await fc.assert(
    fc.asyncProperty(session, runSession),
    params(5_000, [
      [{ steps: [Buffer.from('AUTH PLAIN\r\n'), Buffer.from('\0\xff\r\n', 'latin1')], cuts: [], variant: 0, ip: '127.0.0.1', tlsWorks: true, preface: 'EHLO x\r\n' }],
      [{ steps: [Buffer.from('BDAT 5\r\nab'), Buffer.from('MAIL FROM:<>\r\n')], cuts: [3], variant: 1, ip: '127.0.0.1', tlsWorks: true, preface: '' }],
      [{ steps: [Buffer.from('STARTTLS\r\nEHLO x\r\n')], cuts: [], variant: 0, ip: '::1', tlsWorks: false, preface: 'EHLO x\r\n' }],
    ]),
  );
  // Every message file left in the queue was committed (has its envelope).
  const files = await readdir(spool.dir);
  const msgs = files.filter((f) => f.endsWith('.msg')).map((f) => f.slice(0, -4));
  const envs = new Set(files.filter((f) => f.endsWith('.env')).map((f) => f.slice(0, -4)));
  assert.deepEqual(
    msgs.filter((id) => !envs.has(id)),
    [],
    'no message file without its envelope',
  );
});
