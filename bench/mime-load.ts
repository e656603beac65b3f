/**
 * A small bounded SMTP load client for scenario f: `sessions` connections, each reused, sending
 * MAIL/RCPT/DATA pipelined (one round trip, then the body) until `messages` in all were sent.
 * The whole run is killed after `timeoutMs`.
 */
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { ReplyReader } from './reply-reader.js';

export interface LoadJob {
  port: number;
  messages: number;
  sessions: number;
  from: string;
  to: string;
  /** The message, CRLF line ends, dot-stuffed, without the final ".". */
  body: Buffer;
  timeoutMs: number;
}

export interface LoadResult {
  ms: number;
  accepted: number;
  errors: string[];
  timedOut: boolean;
}

/** A multipart/mixed message of about `total` bytes: a text part and five base64 attachments. */
export function buildAttachmentMessage(total: number, from: string, to: string): Buffer {
  const names = ['report.pdf', 'photo.jpg', 'table.xlsx', 'archive.zip', 'notes.docx'];
  const types = ['application/pdf', 'image/jpeg', 'application/vnd.ms-excel', 'application/zip', 'application/msword'];
  const boundary = '=_bench_boundary_5att';
  const head = [`From: <${from}>`, `To: <${to}>`, 'Subject: five attachments', 'MIME-Version: 1.0', `Content-Type: multipart/mixed; boundary="${boundary}"`, '', 'This is a multi-part message.', ''];
  const parts = [`--${boundary}`, 'Content-Type: text/plain; charset=us-ascii', '', 'Please find five files attached.', ''];
  const raw = Math.floor(((total - 2000) / names.length) * 0.75 * (76 / 78));
  names.forEach((name, i) => {
    const b64 = randomBytes(raw).toString('base64').replace(/.{1,76}/g, '$&\r\n');
    parts.push(`--${boundary}`, `Content-Type: ${types[i]}; name="${name}"`, 'Content-Transfer-Encoding: base64', `Content-Disposition: attachment; filename="${name}"`, '', b64);
  });
  parts.push(`--${boundary}--`, '');
  return Buffer.from([...head, ...parts].join('\r\n'));
}

export async function runLoad(job: LoadJob): Promise<LoadResult> {
  const t0 = process.hrtime.bigint();
  let left = job.messages;
  let accepted = 0;
  const errors: string[] = [];
  const sockets: Socket[] = [];
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    for (const s of sockets) s.destroy();
  }, job.timeoutMs);
  const envelope = `MAIL FROM:<${job.from}>\r\nRCPT TO:<${job.to}>\r\nDATA\r\n`;
  const tail = Buffer.from('.\r\n');

  const session = async (): Promise<void> => {
    const sock = connect({ host: '127.0.0.1', port: job.port });
    sockets.push(sock);
    const closed = new Promise<number>((resolve) => {
      sock.once('close', () => resolve(-1));
      sock.once('error', (e) => {
        errors.push(e.message);
        resolve(-1);
      });
    });
    const replies = new ReplyReader(sock, job.timeoutMs);
    // A closed or silent connection reads as -1, which no step expects.
    const next = (): Promise<number> => Promise.race([replies.next().catch(() => -1), closed]);
    const expect = async (want: number, what: string): Promise<boolean> => {
      const c = await next();
      if (c === want) return true;
      if (errors.length < 20) errors.push(`${what}: got ${c}, expected ${want}`);
      return false;
    };
    try {
      if (!(await expect(220, 'greeting'))) return;
      sock.write('EHLO load.bench.test\r\n');
      if (!(await expect(250, 'EHLO'))) return;
      while (left > 0 && !timedOut) {
        left--;
        sock.write(envelope);
        const ok = (await expect(250, 'MAIL')) && (await expect(250, 'RCPT'));
        if (!(await expect(354, 'DATA')) || !ok) return;
        sock.write(job.body);
        sock.write(tail);
        if (!(await expect(250, 'end of data'))) return;
        accepted++;
      }
      sock.write('QUIT\r\n');
      await expect(221, 'QUIT');
    } finally {
      sock.destroy();
    }
  };

  await Promise.all(Array.from({ length: job.sessions }, () => session()));
  clearTimeout(timer);
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, accepted, errors, timedOut };
}
