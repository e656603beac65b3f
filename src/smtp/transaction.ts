import type { MailCommand, RcptCommand } from './envelope-args.js';
import type { Reply } from './reply.js';
import type { MessageAnalyser } from '../message/index.js';
import type { EnvelopeRecipient } from '../queue/envelope.js';
import type { Target } from '../policy/directory.js';
import { newQueueId, type Spool } from '../queue/spool.js';
import type { MessageWriter } from '../queue/message-writer.js';
import type { DataReader } from './data-reader.js';

/** One mail transaction: MAIL, its RCPTs, and the message file once data starts. */
export class Transaction {
  readonly recipients: EnvelopeRecipient[] = [];
  /** Accepted RCPT commands (before alias expansion), for the recipient limit and hooks. */
  readonly rcptAddresses: string[] = [];
  id = '';
  writer: MessageWriter | null = null;
  reader: DataReader | null = null;
  bdat = false;
  /** Our own trace lines (Received-SPF, the RBL header), written after Received. */
  traceHeaders: string[] = [];
  /** Header lines from DoDATAStart, written after our Received line. */
  extraHeaders: string[] = [];
  /** Analysis of the stored bytes, when a whole-message callback needs it. */
  analyser: MessageAnalyser | null = null;
  /** RCPTs refused in this transaction (LogRecipientsBlocked). */
  readonly blocked: { address: string; reason: string }[] = [];
  /** DoDATAStart's own reply, used when it is a 3xx go-ahead. */
  dataStartReply: Reply | null = null;
  /** A per-line or StartMessage callback ran over its budget: the message gets 451 at the end. */
  scriptStopped = false;

  constructor(
    private readonly spool: Spool,
    readonly mail: MailCommand,
  ) {}

  get rcptCount(): number {
    return this.rcptAddresses.length;
  }

  get firstRecipient(): string {
    return this.rcptAddresses[0] ?? '';
  }

  addRecipient(rcpt: RcptCommand, targets: Target[]): void {
    this.rcptAddresses.push(rcpt.address);
    for (const t of targets) {
      if (this.recipients.some((r) => r.address.toLowerCase() === t.address.toLowerCase())) continue;
      this.recipients.push({
        address: t.address,
        route: t.route,
        state: 'pending',
        original: t.address === rcpt.address ? undefined : rcpt.address,
        dsn: rcpt.notify || rcpt.orcpt ? { notify: rcpt.notify, orcpt: rcpt.orcpt } : undefined,
      });
    }
  }

  returnPathLine(): string {
    return `Return-Path: <${this.mail.address}>\r\n`;
  }

  /** Opens the queue file; the queue id is fixed from here on. */
  start(): MessageWriter {
    this.id = newQueueId();
    this.writer = this.spool.create(this.id);
    return this.writer;
  }

  async discard(): Promise<void> {
    const w = this.writer;
    this.writer = null;
    if (w) await w.abort();
  }
}
