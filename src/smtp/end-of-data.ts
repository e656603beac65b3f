import type { AnalysisResult } from '../message/index.js';
import type { ProcessActions, RecipientView, SessionHooks } from './hooks.js';
import { parseReplyText, reply, type Reply } from './reply.js';

export interface EndOfDataInput {
  hooks: SessionHooks | null;
  analysis: AnalysisResult;
  /** The RCPT addresses accepted for this message. */
  recipients: string[];
  /** RCPTs refused during the transaction, with the reply each got. */
  blocked: { address: string; reason: string }[];
  sender: string;
  authSender: string;
  ip: string;
  locallySent: boolean;
  size: number;
  /** The configured BCC monitor address ("" = none), MonitorBcc's last argument. */
  monitor: string;
  /** The stored message the VPOP3.GetMessage* helpers read, while ProcessMessage runs only. */
  message?: { path: string; size: number; structure: unknown[] };
}

export type EndOfDataDecision =
  | { kind: 'refuse'; reply: Reply }
  | { kind: 'discard' }
  | {
      kind: 'accept';
      recipients: { add: string[]; replace: boolean };
      headerModifiers: string[];
      monitor: { to: string; bcc: string[] } | null;
    };

const lower = (a: string): string => a.toLowerCase();

/** S21: BCC = envelope recipients that appear in neither To nor Cc. */
export function bccOf(recipients: string[], to: string[], cc: string[]): string[] {
  const seen = new Set([...to, ...cc].map(lower));
  return recipients.filter((r) => !seen.has(lower(r)));
}

/** Delete+Ignore refuses with the Reason (S19); a Reason with its own code keeps it. */
function refusalFor(reason: string): Reply {
  const own = reason ? parseReplyText(reason) : null;
  if (own && own.code >= 500) return own;
  return reply(550, '5.7.1', reason || 'Message rejected by policy');
}

/**
 * The whole-message callbacks in the order of S19: CheckRecipients → ProcessMessage →
 * MonitorBcc → LogRecipients (and LogRecipientsBlocked). Pure decision: the session applies
 * it before the durable commit. A ScriptStopped from any callback propagates.
 */
export function decideEndOfData(i: EndOfDataInput): EndOfDataDecision {
  const a = i.analysis;
  const view: RecipientView = {
    recipients: i.recipients,
    to: a.to,
    cc: a.cc,
    bcc: bccOf(i.recipients, a.to, a.cc),
    sender: i.sender,
    authSender: i.authSender,
    subject: a.subject,
  };
  const h = i.hooks;
  const checked = h?.checkRecipients({ ...view, ip: i.ip, locallySent: i.locallySent, size: i.size }) ?? null;
  if (checked && checked.code >= 400) {
    h?.logRecipientsBlocked(i.recipients, checked.lines.join(' '), i.sender, i.authSender, a.subject);
    return { kind: 'refuse', reply: checked };
  }
  let actions: ProcessActions | null = null;
  if (h) {
    // The message helpers work inside ProcessMessage only (README): not in the other callbacks.
    h.setMessageContext?.(i.message ?? null);
    try {
      actions = h.processMessage({
        mailFrom: i.sender,
        subject: a.subject,
        recipients: i.recipients,
        structure: a.structure as unknown as Record<string, string | number>[],
        size: i.size,
        attachments: a.attachments as unknown as Record<string, string | number>[],
      });
    } finally {
      h.setMessageContext?.(null);
    }
  }
  if (actions?.delete && actions.ignore) return { kind: 'refuse', reply: refusalFor(actions.reason) };
  if (actions?.ignore) return { kind: 'discard' };
  let monitor: { to: string; bcc: string[] } | null = null;
  if (view.bcc.length) {
    const to = (h?.monitorBcc(i.recipients, view.bcc, i.sender, i.authSender, a.subject, i.monitor) ?? i.monitor).trim();
    if (to) monitor = { to: to.replace(/^<(.*)>$/, '$1'), bcc: view.bcc };
  }
  h?.logRecipients(view);
  if (i.blocked.length) {
    h?.logRecipientsBlocked(
      i.blocked.map((b) => b.address),
      i.blocked[0].reason,
      i.sender,
      i.authSender,
      a.subject,
    );
  }
  return {
    kind: 'accept',
    recipients: { add: actions?.recipients ?? [], replace: actions ? !actions.sendToOriginalRecipients : false },
    headerModifiers: actions?.headerModifiers ?? [],
    monitor,
  };
}
