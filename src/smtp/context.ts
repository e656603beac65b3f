import type { Logger } from 'pino';
import type { Config, ServiceConfig } from '../config/schema.js';
import type { Directory } from '../policy/directory.js';
import type { NetworkList } from '../policy/cidr.js';
import type { Spool } from '../queue/spool.js';
import type { Envelope } from '../queue/envelope.js';
import type { DeliverNow } from '../delivery/deliver-now.js';
import type { Reply } from './reply.js';
import type { DnsResolver } from '../dns/resolver.js';
import type { Batv } from '../policy/batv.js';
import type { AuthThrottle } from '../policy/auth-throttle.js';
import type { SessionFacts, SessionHooks, SessionPolicy } from './hooks.js';

/** What every session of one service shares: configuration, policy data and the queue. */
export interface ServiceContext {
  config: Config;
  service: ServiceConfig;
  directory: Directory;
  relayNetworks: NetworkList;
  dns: DnsResolver;
  /** BATV signer/verifier when keys are configured. */
  batv: Batv | null;
  authThrottle: AuthThrottle;
  /** Sources allowed to send a PROXY protocol header. */
  proxyTrusted: NetworkList;
  spool: Spool;
  log: Logger;
  /** A message was committed to the queue. */
  onQueued(env: Envelope): void;
  /** Local mailboxes written before the 250, when set (see DeliverNow). */
  deliverNow?: DeliverNow;
  /** The session's script hooks (SMTPSVR.LUA), when a script is installed. */
  hooksFor?(policy: SessionPolicy, facts: () => SessionFacts, log: Logger): SessionHooks | null;
  /** Hears what sessions do (the admin console's live view and metrics), when set. */
  observer?: SessionObserver;
}

/** What a finished message came to: `queued`, `discarded...`, `refused: <why>`, `deferred`. */
export interface MessageOutcome {
  queueId: string;
  outcome: string;
  from: string;
  to: string[];
  size: number;
  reply: Reply;
}

/**
 * Session events for observers outside the SMTP code. Called synchronously on the session's
 * path, so an observer must be cheap and must not throw.
 */
export interface SessionObserver {
  opened(session: string, client: { ip: string; port: number; service: string }): void;
  closed(session: string): void;
  /** A command line as received (AUTH exchange lines included: summarise, never log them). */
  command(session: string, line: string): void;
  reply(session: string, r: Reply): void;
  message(session: string, m: MessageOutcome): void;
}

/** The transport a session talks through: a socket, or a transcript in the script test bench. */
export interface SessionIO {
  send(r: Reply): void;
  /** Sends what is batched, drops unread input, and upgrades to TLS. Returns the cipher details. */
  startTls(): Promise<string>;
  /** Sends what is batched and closes. */
  close(): void;
  /** Stop reading until `resume` (the message writer is behind). */
  pause(): void;
  resume(): void;
  /** Switch the idle timeout: command phase or data phase. */
  setPhase(phase: 'command' | 'data'): void;
}

export interface ClientInfo {
  ip: string;
  port: number;
  /** This host's address the client connected to (a literal of it is a local domain). */
  serverIp?: string;
  /** Set when the connection is encrypted: protocol and cipher. */
  tls?: string;
}
