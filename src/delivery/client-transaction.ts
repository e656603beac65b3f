import { SmtpClientError } from './client-error.js';
import { localRefusal, mailCommand, rcptCommand, type TxEnvelope } from './client-params.js';
import { replyClass, type ClientReply } from './client-reply.js';
import type { ClientSession, Exchange } from './client-session.js';
import { DotStuffer, readBody, type BodySource } from './dot-stream.js';

export interface Transaction extends TxEnvelope {
  /** The message bytes (read once per attempt; a file from an offset is never held in memory). */
  data: BodySource;
}

/** Which step decided a recipient: refused here, by MAIL, by its RCPT, by DATA, or by the final ".". */
export type Stage = 'local' | 'MAIL' | 'RCPT' | 'DATA' | 'DOT';

export interface Outcome {
  code: number;
  enhanced?: string;
  /** The full reply (after onReply), lines with their codes joined by CRLF. */
  reply: string;
}

export interface RecipientResult extends Outcome {
  address: string;
  stage: Stage;
}

export interface SendResult {
  /** One per recipient, in the order given: 2xx delivered, 4xx retry, 5xx bounce. */
  perRecipient: RecipientResult[];
  /** The reply to MAIL, when MAIL was sent. */
  mail?: Outcome;
  /** The reply that settled the accepted recipients: DATA's refusal or the final "."'s. */
  data?: Outcome;
  /** DSN parameters went to the server (else NOTIFY=SUCCESS asks for a "relayed" DSN, RFC 3461 §4.1). */
  dsn: boolean;
  pipelined: boolean;
}

const outcome = (r: ClientReply): Outcome => ({ code: r.code, enhanced: r.enhanced, reply: r.full });

function expectFinal(s: ClientSession, command: string, x: Exchange): void {
  const c = replyClass(x.reply);
  if (c !== 2 && c !== 4 && c !== 5) throw s.fail('protocol', command, `unexpected reply ${x.reply.last}`, x.reply);
}

/**
 * One mail transaction (RFC 5321 §3.3). With PIPELINING, MAIL, every RCPT and DATA go in one
 * write and the replies are read in order (RFC 2920); without, one by one, stopping early when
 * MAIL or every RCPT is refused. A DATA whose 354 came although nothing is to be sent gets an
 * empty "." when the server holds no recipient, else the connection is dropped (never a
 * message to recipients we count as refused). Network errors and timeouts reject.
 */
export async function runTransaction(s: ClientSession, tx: Transaction, next?: Transaction): Promise<SendResult> {
  const ext = s.extensions;
  const t = s.timeouts;
  // Sent already, behind the previous transaction's data: checked then, only the replies to read.
  const pre = s.presented;
  s.presented = null;
  if (pre && pre.tx !== tx) throw s.fail('protocol', null, 'a transaction other than the one pipelined ahead was started');
  const local = pre ? null : localRefusal(tx, ext, s.label);
  if (local) {
    return { perRecipient: tx.recipients.map((r) => ({ address: r.address, stage: 'local', ...local })), dsn: false, pipelined: false };
  }
  if (!pre && s.dirty) await s.reset();
  const mail = pre?.mail ?? mailCommand(tx, ext);
  const rcpts = pre?.rcpts ?? tx.recipients.map((r) => rcptCommand(r, ext));
  const pipelined = ext.has('PIPELINING');
  const rcptX: Exchange[] = [];
  let mailX: Exchange;
  let dataX: Exchange | null = null;
  if (pipelined) {
    if (!pre) s.write([mail, ...rcpts, 'DATA'], mail);
    mailX = await s.receive(mail, t.mail);
    for (const line of rcpts) rcptX.push(await s.receive(line, t.rcpt));
    dataX = await s.receive('DATA', t.dataInit);
  } else {
    mailX = await s.command(mail, t.mail);
    if (replyClass(mailX.reply) === 2) {
      for (const line of rcpts) rcptX.push(await s.command(line, t.rcpt));
      if (rcptX.some((x) => replyClass(x.reply) === 2)) dataX = await s.command('DATA', t.dataInit);
    }
  }
  s.dirty = replyClass(mailX.real) === 2;
  expectFinal(s, mail, mailX);
  rcptX.forEach((x, i) => expectFinal(s, rcpts[i], x));

  const result: SendResult = { perRecipient: [], mail: outcome(mailX.reply), dsn: ext.has('DSN'), pipelined };
  const mailOk = replyClass(mailX.reply) === 2;
  const settled: (RecipientResult | null)[] = tx.recipients.map((r, i) => {
    if (!mailOk) return { address: r.address, stage: 'MAIL', ...outcome(mailX.reply) };
    const x = rcptX[i];
    return replyClass(x.reply) === 2 ? null : { address: r.address, stage: 'RCPT', ...outcome(x.reply) };
  });
  const accepted = settled.flatMap((v, i) => (v ? [] : [i]));
  const go = accepted.length > 0 && dataX !== null && dataX.real.code === 354 && dataX.reply.code === 354;

  let decided: ClientReply | null = null;
  let stage: Stage = 'DATA';
  if (dataX && !go) {
    if (dataX.real.code === 354) {
      const serverHasRecipients = replyClass(mailX.real) === 2 && rcptX.some((x) => replyClass(x.real) === 2);
      await abandonData(s, serverHasRecipients);
    }
    // A 354 the hook made up (the server refused) cannot start the data: the server's reply stands.
    decided = dataX.reply.code === 354 ? dataX.real : dataX.reply;
    const c = replyClass(decided);
    if (accepted.length && c !== 4 && c !== 5) throw s.fail('protocol', 'DATA', `unexpected reply ${decided.last}`, decided);
  } else if (go) {
    decided = await transferData(s, tx, pipelined ? next : undefined);
    stage = 'DOT';
  }
  if (decided && accepted.length) {
    result.data = outcome(decided);
    for (const i of accepted) settled[i] = { address: tx.recipients[i].address, stage, ...outcome(decided) };
  }
  result.perRecipient = settled as RecipientResult[];
  if (s.gone) s.wire.end();
  return result;
}

/** Leaves data mode after an unwanted 354 without delivering anything. */
async function abandonData(s: ClientSession, serverHasRecipients: boolean): Promise<void> {
  if (serverHasRecipients) {
    s.wire.kill('protocol', 'DATA abandoned after 354 (onReply refused a step the server accepted)');
    return;
  }
  s.write(['.'], '.');
  await s.receive('.', s.timeouts.dataEnd);
  s.dirty = false;
}

/**
 * The next transaction's MAIL, RCPT and DATA to go out right behind this one's final "." (RFC
 * 2920 §3.1: message content may start a command group), saving a round trip per message;
 * null when it cannot be (refused locally, or the server is closing).
 */
function presentNext(s: ClientSession, next: Transaction | undefined): string | null {
  if (!next?.recipients.length || s.gone || localRefusal(next, s.extensions, s.label)) return null;
  const mail = mailCommand(next, s.extensions);
  const rcpts = next.recipients.map((r) => rcptCommand(r, s.extensions));
  const text = s.format([mail, ...rcpts, 'DATA']);
  s.presented = { tx: next, mail, rcpts };
  return text;
}

/** Streams the message after 354 and returns the reply to the final "." (the next transaction's commands may follow it). */
async function transferData(s: ClientSession, tx: Transaction, next?: Transaction): Promise<ClientReply> {
  const t = s.timeouts;
  const stuffer = new DotStuffer();
  let early = false;
  // The last chunk waits to go out with the final "." in one write (a small message: one write).
  let held: Buffer | null = null;
  try {
    for await (const chunk of readBody(tx.data)) {
      if (s.wire.replyWaiting || s.wire.closed) {
        early = true;
        break;
      }
      const out = stuffer.push(chunk);
      if (!out.length) continue;
      if (held && !s.wire.write(held, 'DATA')) await s.wire.drain(t.dataBlock, 'DATA');
      held = out;
    }
  } catch (err) {
    // A server that refuses mid-data and closes: its reply is the answer, not the broken pipe.
    if (err instanceof SmtpClientError && s.wire.replyWaiting) early = true;
    else if (err instanceof SmtpClientError) throw err;
    // Never end a partial message with ".": drop the connection so the server discards it.
    else throw s.fail('source', 'DATA', `cannot read the message data: ${(err as Error).message}`);
  }
  if (!early) {
    const group = presentNext(s, next);
    const tail = group ? Buffer.concat([stuffer.end(), Buffer.from(group, 'utf8')]) : stuffer.end();
    s.wire.write(held ? Buffer.concat([held, tail]) : tail, '.');
  }
  const x = await s.receive('.', t.dataEnd);
  s.dirty = false;
  if (early) {
    // The server answered before the end of the data: only a refusal makes sense, and the
    // session state is unknown afterwards.
    s.wire.kill('protocol', 'reply received before the end of the message data');
    if (replyClass(x.reply) !== 4 && replyClass(x.reply) !== 5) {
      throw new SmtpClientError('protocol', s.label, '.', `reply before the end of the message data: ${x.reply.last}`, x.reply);
    }
    return x.reply;
  }
  const c = replyClass(x.reply);
  if (c !== 2 && c !== 4 && c !== 5) throw s.fail('protocol', '.', `unexpected reply ${x.reply.last}`, x.reply);
  return x.reply;
}
