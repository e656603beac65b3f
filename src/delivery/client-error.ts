import type { ClientReply } from './client-reply.js';

/**
 * Why an SMTP client operation failed without a per-recipient answer:
 * - `network`: connect refused, connection reset or closed by the remote
 * - `timeout`: a connect, reply or data-block timeout (RFC 5321 §4.5.3.2); the connection is dropped
 * - `tls`: the TLS handshake failed (certificate check included)
 * - `protocol`: a malformed or unexpected reply, or bytes injected after the STARTTLS reply
 * - `reply`: the remote refused a session step (greeting, EHLO/HELO, STARTTLS, RSET); see `reply`
 * - `auth`: AUTH refused, or credentials configured but no usable mechanism offered
 * - `extension`: STARTTLS required by the options but not offered
 * - `hook`: the onReply hook threw
 * - `source`: the message data could not be read (the connection is dropped: never a partial message)
 */
export type ClientErrorKind = 'network' | 'timeout' | 'tls' | 'protocol' | 'reply' | 'auth' | 'extension' | 'hook' | 'source';

/** An SMTP client failure that names the remote host and the command it happened on. */
export class SmtpClientError extends Error {
  override readonly name = 'SmtpClientError';

  constructor(
    readonly kind: ClientErrorKind,
    /** `host:port` as connected, with the greeting's name when known. */
    readonly host: string,
    /** The command as shown to onReply (AUTH arguments masked); "" for the greeting, null before it. */
    readonly command: string | null,
    detail: string,
    /** The (possibly rewritten) reply that caused the failure, for `reply`/`auth` errors. */
    readonly reply?: ClientReply,
    options?: { cause?: unknown },
  ) {
    super(`smtp client ${host}: ${detail}${describeCommand(command)}`, options);
  }
}

function describeCommand(command: string | null): string {
  if (command === null) return '';
  if (command === '') return ' (greeting)';
  return ` (after ${command})`;
}
