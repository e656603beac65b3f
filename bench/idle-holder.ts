/**
 * Child process of scenario e (started by holder-client.ts, with its open-files limit raised):
 *   node --import tsx bench/idle-holder.ts PORT COUNT [MARKER]
 * opens COUNT connections to 127.0.0.1:PORT, at most BATCH at a time, reads each one's greeting,
 * then holds them idle. Reports one JSON line on stdout when all are open, waits for a line
 * "close" on stdin (or stdin's end), closes them all, reports another JSON line and exits.
 * Bounded: each connection has 10 s to greet, opening stops after 180 s, and the process exits
 * by itself after 10 minutes whatever happens.
 */
import { connect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { fdSoftLimit } from './fd-limit.js';

const BATCH = 100;
const GREET_MS = 10_000;
const OPEN_MS = 180_000;
const LIFETIME_MS = 600_000;

const [portArg, countArg, marker = ''] = process.argv.slice(2);
const port = Number(portArg);
const count = Number(countArg);

const say = (o: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(o)}\n`);

type Opened = { ok: true; sock: Socket; marked: boolean } | { ok: false; error: string };

let closedEarly = 0;
let closing = false;

/** One connection, resolved once its greeting (last line "ddd ...") has arrived. */
function open(): Promise<Opened> {
  return new Promise((resolve) => {
    const sock = connect({ host: '127.0.0.1', port });
    let text = '';
    let settled = false;
    const finish = (r: Opened): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (!r.ok) sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => finish({ ok: false, error: 'no greeting within 10 s' }), GREET_MS);
    const onData = (b: Buffer): void => {
      text = (text + b.toString('latin1')).slice(-4096);
      if (!/(^|\n)\d{3} [^\n]*\r?\n$/.test(text)) return;
      sock.off('data', onData);
      sock.on('data', () => undefined); // anything later (e.g. a timeout 421) is ignored
      if (!text.startsWith('220')) finish({ ok: false, error: `greeting: ${text.trim().slice(0, 80)}` });
      else finish({ ok: true, sock, marked: marker !== '' && text.includes(marker) });
    };
    sock.on('data', onData);
    sock.on('error', (err) => finish({ ok: false, error: err.message }));
    sock.on('close', () => {
      if (!settled) finish({ ok: false, error: 'closed before the greeting' });
      else if (!closing) closedEarly++;
    });
  });
}

async function main(): Promise<void> {
  const life = setTimeout(() => process.exit(3), LIFETIME_MS);
  life.unref();
  const limit = fdSoftLimit('self');
  if (!Number.isInteger(port) || port <= 0 || !Number.isInteger(count) || count <= 0) {
    say({ event: 'open', opened: 0, failed: 0, marked: 0, ms: 0, errors: ['usage: idle-holder.ts PORT COUNT [MARKER]'] });
    process.exit(2);
  }
  if (limit !== null && limit < count + 64) {
    say({ event: 'open', opened: 0, failed: count, marked: 0, ms: 0, errors: [`open-files limit ${limit} is below ${count + 64}`] });
    process.exit(2);
  }
  const t0 = Date.now();
  const socks: Socket[] = [];
  const errors = new Map<string, number>();
  let marked = 0;
  let failed = 0;
  for (let i = 0; i < count && Date.now() - t0 < OPEN_MS; i += BATCH) {
    const batch = await Promise.all(Array.from({ length: Math.min(BATCH, count - i) }, open));
    for (const r of batch) {
      if (r.ok) {
        socks.push(r.sock);
        if (r.marked) marked++;
      } else {
        failed++;
        errors.set(r.error, (errors.get(r.error) ?? 0) + 1);
      }
    }
  }
  failed = count - socks.length; // including any not attempted after the 180 s cutoff
  const errs = [...errors].slice(0, 3).map(([e, n]) => `${n}x ${e}`);
  say({ event: 'open', opened: socks.length, failed, marked, ms: Date.now() - t0, errors: errs, fdLimit: limit });

  await new Promise<void>((resolve) => {
    const rl = createInterface({ input: process.stdin });
    rl.on('line', (l) => {
      if (l.trim() === 'close') resolve();
    });
    rl.on('close', () => resolve());
  });
  closing = true;
  const early = closedEarly;
  for (const s of socks) s.destroy();
  say({ event: 'closed', closedEarly: early });
  process.exit(0);
}

void main();
