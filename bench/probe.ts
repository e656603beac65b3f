/**
 * The latency probe: one extra SMTP client running beside smtp-source (which reports no latency),
 * sending messages of the same size one after another (closed loop: the next starts when the previous
 * got its reply), with a new connection per message or one reused connection like the load it joins.
 * For every message it times the end of DATA: from handing the final "." to the kernel (after the body
 * has been handed over) until the reply's last line arrives. Being one connection among 21 it gets
 * about a 21st of the server's attention, so its samples come at the server's pace under that load,
 * and it costs the two cores little (unlike a Node generator driving all 20 connections, whose own
 * event-loop delay would be added to every timestamp).
 * Bounded: stops when asked, after `maxMessages`, or after `maxMs`; each reply has 60 s.
 */
import { connect, type Socket } from 'node:net';
import { ReplyReader } from './reply-reader.js';

export interface ProbeJob {
  port: number;
  bytes: number;
  reuse: boolean;
  from: string;
  to: string;
  helo: string;
  maxMessages: number;
  maxMs: number;
}

export interface ProbeResult {
  /** End-of-DATA reply latencies in milliseconds, one per accepted message. */
  samples: number[];
  accepted: number;
  errors: string[];
}

export interface Probe {
  /** Asks the probe to finish its current message and stop; resolves with what it measured. */
  stop(): Promise<ProbeResult>;
}

const REPLY_MS = 60_000;

/** A message of `bytes` bytes: a few header lines, then 78-character lines (never starting with "."). */
export function probeMessage(bytes: number, from: string, to: string): Buffer {
  const head = `From: <${from}>\r\nTo: <${to}>\r\nSubject: latency probe\r\nMessage-ID: <probe@bench.test>\r\n\r\n`;
  const line = 'x'.repeat(78) + '\r\n';
  const n = Math.max(1, Math.ceil((bytes - head.length) / line.length));
  return Buffer.from(head + line.repeat(n));
}

function write(sock: Socket, data: Buffer | string): Promise<void> {
  return new Promise((resolve, reject) => sock.write(data, (err) => (err ? reject(err) : resolve())));
}

export function startProbe(job: ProbeJob): Probe {
  const body = probeMessage(job.bytes, job.from, job.to);
  const samples: number[] = [];
  const errors: string[] = [];
  let stopping = false;
  let sock: Socket | null = null;
  const t0 = Date.now();
  const guard = setTimeout(() => (stopping = true), job.maxMs);

  const expect = async (r: ReplyReader, want: number, what: string): Promise<void> => {
    const code = await r.next();
    if (code !== want) throw new Error(`${what}: reply ${code}, expected ${want}`);
  };
  const open = async (): Promise<ReplyReader> => {
    // No Nagle: the final "." goes out at once instead of waiting for the ACK of the body's last
    // segment (which delayed ACKs hold back 40 ms), so the time measured is the server's.
    const s = connect({ host: '127.0.0.1', port: job.port, noDelay: true });
    s.on('error', () => undefined); // reported through the reader
    sock = s;
    const r = new ReplyReader(s, REPLY_MS);
    await expect(r, 220, 'greeting');
    await write(s, `HELO ${job.helo}\r\n`);
    await expect(r, 250, 'HELO');
    return r;
  };
  const close = async (r: ReplyReader): Promise<void> => {
    const s = sock;
    if (!s) return;
    try {
      await write(s, 'QUIT\r\n');
      await expect(r, 221, 'QUIT');
    } catch {
      /* closing anyway */
    }
    s.destroy();
    sock = null;
  };

  const loop = async (): Promise<void> => {
    let r: ReplyReader | null = null;
    for (let i = 0; i < job.maxMessages && !stopping && Date.now() - t0 < job.maxMs; i++) {
      try {
        r ??= await open();
        const s = sock as Socket;
        await write(s, `MAIL FROM:<${job.from}>\r\n`);
        await expect(r, 250, 'MAIL');
        await write(s, `RCPT TO:<${job.to}>\r\n`);
        await expect(r, 250, 'RCPT');
        await write(s, 'DATA\r\n');
        await expect(r, 354, 'DATA');
        await write(s, body);
        const start = process.hrtime.bigint();
        await write(s, '.\r\n');
        await expect(r, 250, 'end of data');
        samples.push(Number(process.hrtime.bigint() - start) / 1e6);
        if (!job.reuse) {
          await close(r);
          r = null;
        }
      } catch (err) {
        if (errors.length < 10) errors.push((err as Error).message);
        sock?.destroy();
        sock = null;
        r = null;
        if (errors.length >= 10) break; // a server that keeps failing: stop probing, the run reports it
      }
    }
    if (r) await close(r);
  };
  const done = loop();
  return {
    async stop() {
      stopping = true;
      await done;
      clearTimeout(guard);
      return { samples, accepted: samples.length, errors };
    },
  };
}

/** The p-th percentile (0-100) of the samples, nearest rank; null when empty. */
export function percentile(xs: number[], p: number): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.min(s.length, Math.max(1, Math.ceil((p / 100) * s.length)));
  return s[rank - 1];
}
