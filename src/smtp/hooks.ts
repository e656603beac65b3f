import type { Reply } from './reply.js';

/**
 * The session's policy values that scripts read and may change (VPOP3's IN/OUT globals,
 * S24/S25). The session enforces whatever is here at the moment of each check.
 */
export interface SessionPolicy {
  validClient: boolean;
  localClient: boolean;
  authRequired: boolean;
  /** Space-separated user names allowed to AUTH from this address; "" = anyone. */
  allowedUsers: string;
  forceDisconnect: boolean;
  useBATV: boolean;
  maxRecipientsLocal: number;
  maxRecipientsIncoming: number;
  maxMessagesLocal: number;
  maxLineLength: number;
  addUserAddresses: boolean;
  /** S20: the RBL settings (settable in Start) and the outcome and actions (settable later). */
  checkRbl: boolean;
  rblServers: string[];
  rblWhitelist: string[];
  rblCheckAll: boolean;
  rblFound: boolean;
  rblAccept: boolean;
  rblBlackhole: boolean;
  rblRedirect: string;
  rblRejectMessage: string;
  rblHeader: string;
}

/** Read-only facts about the session handed to every callback (S7). */
export interface SessionFacts {
  ip: string;
  sessionId: string;
  serviceId: number;
  serviceName: string;
  authUser: string;
  tls: string;
  helo: string;
  mailFrom: string;
  /** zone → listing as a number in VPOP3's byte order (RBLResultInfo). */
  rblResultInfo: Record<string, number>;
}

/** Thrown by a hook whose script ran over its budget (S4): the session answers 451 / 421. */
export class ScriptStopped extends Error {
  constructor(
    readonly hook: string,
    message: string,
  ) {
    super(message);
    this.name = 'ScriptStopped';
  }
}

/**
 * The SMTPSVR.LUA callbacks as the session sees them. Every method answers "no opinion"
 * (null / the value passed in) when the script lacks the callback or it failed (S3, S4).
 */
export interface SessionHooks {
  /** Start(): a replacement greeting. */
  start(): Reply | null;
  /** RBLResults(): a replacement greeting after the RBL checks. */
  rblResults(): Reply | null;
  maxMessageSize(host: string, current: number): number;
  ehloCapabilities(host: string, caps: string[]): string[];
  helo(host: string, refuse: boolean, ehlo: boolean): { refuse: boolean; reply: Reply | null };
  help(lines: string[]): string[];
  simple(command: 'QUIT' | 'NOOP' | 'RSET'): Reply | null;
  verify(command: 'VRFY' | 'EXPN', recipients: string[], current: Reply): Reply;
  mailFrom(data: string, address: string, params: Record<string, string>, spf: string, authSender: string): { params: Record<string, string>; reply: Reply | null };
  rcptTo(data: string, address: string, params: Record<string, string>, recipients: string[]): { params: Record<string, string>; reply: Reply | null };
  dataStart(recipients: string[]): { reply: Reply | null; headers: string[] };
  unrecognised(line: string): Reply | null;
  startMessage(): void;
  /** True when MessageLineRaw or MessageLine exists: the data path then works line by line. */
  readonly wantsLines: boolean;
  /**
   * MessageLineRaw and MessageLine for each of the `count` lines of `block` (pieces of bytes
   * in which each line ends CRLF), in order; `dotted` are the indexes of the lines that had a
   * stuffed dot removed (the raw line has it back). Per line, null keeps it, false drops it, a
   * buffer replaces it (may hold CRLFs); null for the whole block when every line is kept.
   */
  messageLines(block: Buffer[], count: number, dotted: number[]): (Buffer | false | null)[] | null;
  endMessage(): Reply | null;
  /** True when a whole-message callback exists: the data path then analyses the message. */
  readonly wantsAnalysis: boolean;
  /** CheckRecipients() (S21): a 4xx/5xx refuses the message. */
  checkRecipients(a: RecipientView & { ip: string; locallySent: boolean; size: number }): Reply | null;
  /** ProcessMessage() (S19): the actions as returned, or null for the defaults. */
  processMessage(a: ProcessMessageArgs): ProcessActions | null;
  /** MonitorBcc() (S22): where a copy goes ("" for nowhere), or null for the configured default. */
  monitorBcc(recipients: string[], bcc: string[], sender: string, authSender: string, subject: string, monitor: string): string | null;
  logRecipients(a: RecipientView): void;
  logRecipientsBlocked(blocked: string[], reason: string, sender: string, authSender: string, subject: string): void;
  /** The message the VPOP3.* message helpers read, only while ProcessMessage may run. */
  setMessageContext?(ctx: { path: string; size: number; structure: unknown[] } | null): void;
  end(): void;
}

/** What the end-of-data callbacks know of a message's recipients (S21, S23). */
export interface RecipientView {
  recipients: string[];
  to: string[];
  cc: string[];
  bcc: string[];
  sender: string;
  authSender: string;
  subject: string;
}

export interface ProcessActions {
  sendToOriginalRecipients: boolean;
  delete: boolean;
  ignore: boolean;
  reason: string;
  recipients: string[];
  headerModifiers: string[];
}

export interface ProcessMessageArgs {
  mailFrom: string;
  subject: string;
  recipients: string[];
  structure: Record<string, string | number>[];
  size: number;
  attachments: Record<string, string | number>[];
}
