/**
 * What the message analyser reports. Field names of MimePart and Attachment are VPOP3's
 * (ProcessMessage's <message MIME structure> and <attachments> tables), so the Lua wiring can
 * pass them through as they are.
 */

/** One field of the top-level header, in the order of the message. */
export interface HeaderField {
  /** The field name as written (case kept). */
  name: string;
  /**
   * The value unfolded (line breaks of folded lines removed, the whitespace after them kept),
   * leading and trailing whitespace removed, not RFC 2047-decoded. Bytes are read as UTF-8
   * when they are valid UTF-8 (RFC 6532), else one character per byte (Latin-1).
   */
  value: string;
}

/**
 * One row of the MIME structure table: one MIME entity (header + body), in document order,
 * which is IMAP section order.
 *
 * Path is the entity's IMAP section specifier (RFC 3501 §6.4.5):
 * - the top-level entity of a message that is not multipart is section "1";
 * - parts of a multipart are numbered from 1 under their multipart's number ("1", "2", "3.1");
 * - a message/rfc822 part "P" is followed by the entity it encapsulates: "P.1" when that is
 *   not multipart, and when it is multipart its parts are "P.1", "P.2", ...;
 * - a multipart that is a message's own body has no number in IMAP: its row gets the name
 *   IMAP gives that body, "TEXT" for the top-level message and "P.TEXT" for the message
 *   encapsulated in part P (exactly the labels of RFC 3501's example table).
 *
 * Start is the offset of the first byte of the entity's header (0 for the top-level entity;
 * for a part, the byte just after its boundary line; for an encapsulated message, the first
 * byte of the message/rfc822 part's body). End is the offset just past the entity's last byte:
 * for an entity closed by a boundary line, the CRLF in front of that line belongs to the
 * boundary (RFC 2046 §5.1.1) and is not included; an entity that runs to the end of the
 * message (the top-level one, or an unterminated part) ends at the message size. A multipart's
 * End includes its epilogue. So bytes [Start, End) of the stored message are that entity.
 */
export interface MimePart {
  Path: string;
  /** Lower-cased main type ("text", "multipart"); the RFC 2045 default ("text", or "message" in multipart/digest) when the header has none. */
  ContentType: string;
  /** Lower-cased subtype ("plain"); "" when the Content-Type has no "/". */
  ContentSubtype: string;
  /** The Content-Type `name` parameter, RFC 2231 and RFC 2047 decoded; "" when absent. */
  ContentTypeFilename: string;
  /** Lower-cased Content-Disposition value ("inline", "attachment"), "" when absent. */
  ContentDisposition: string;
  /** The Content-Disposition `filename` parameter, RFC 2231 and RFC 2047 decoded; "" when absent. */
  ContentDispositionFilename: string;
  Start: number;
  End: number;
}

export type AttachmentType = 'MIME' | 'UUE' | 'BINHEX' | 'MIMEUUE' | 'MIMEBINHEX' | 'TNEF';

/**
 * One attachment.
 * - MIME: a leaf part (message/rfc822 included) with disposition "attachment" or a filename.
 *   Parts that only wrap one of the encodings below (x-uuencode, mac-binhex40) are listed by the
 *   files inside them instead, and as MIME only when nothing could be decoded from them.
 * - UUE / BINHEX: a uuencoded / BinHex 4.0 file found in text (the body of a message without
 *   MIME, or a text/* part, after its transfer encoding is undone).
 * - MIMEUUE: a uuencoded file in a part declared as uuencoded (Content-Transfer-Encoding
 *   x-uuencode, uuencode, x-uue, or type application/x-uuencode).
 * - MIMEBINHEX: the file in an application/mac-binhex40 part.
 * - TNEF: a file inside an application/ms-tnef (winmail.dat) part; the winmail.dat part itself
 *   is listed too, as MIME, when it has a name or disposition attachment.
 * Rows are in the order found (a part's MIME row before what is found inside it). Parts past
 * maxParts have no structure row, so nothing in them is listed.
 */
export interface Attachment {
  /** 1-based index into the structure table of the part the attachment was found in. */
  MIMESection: number;
  /** File name ("" when the part has none). */
  Name: string;
  /** For MIME: the part's type/subtype. For the others: guessed from the name's extension (application/octet-stream when unknown). */
  MIMEType: string;
  /**
   * Decoded size in bytes: after the transfer encoding for MIME; the decoded length for UUE;
   * the data fork's length from the BinHex header; the attAttachData length for TNEF.
   */
  Size: number;
  Type: AttachmentType;
}

export interface AnalysisResult {
  /** The top-level header's fields, in order (up to maxHeaderBytes). */
  headers: HeaderField[];
  /** The first Subject field, RFC 2047-decoded; "" when absent. */
  subject: string;
  /** Bare addresses (addr-spec, quoted local parts kept quoted) from all From / To / Cc fields; groups flattened. */
  from: string[];
  to: string[];
  cc: string[];
  structure: MimePart[];
  attachments: Attachment[];
  /** Bytes given to the analyser. */
  size: number;
  /** What was found malformed (codes, each listed once, in order of first occurrence). */
  defects: string[];
  /** True when a limit made the analyser leave something out (parts, depth, attachments, header bytes). */
  truncated: boolean;
}

export interface AnalyserOptions {
  /** Most rows in the structure table; later parts are parsed for their boundaries only. Default 1000. */
  maxParts?: number;
  /** Deepest nesting of multiparts and encapsulated messages; deeper ones are treated as leaves. Default 50. */
  maxDepth?: number;
  /** Most bytes of the top-level header kept (names + values). Default 1 MiB. Part headers keep at most 64 KiB (or this, when smaller) of their Content-* fields. */
  maxHeaderBytes?: number;
  /** Lines longer than this are handled in pieces (they can be neither boundaries nor uuencode lines). Default 64 KiB. */
  maxLineBytes?: number;
  /** Most attachment rows. Default 1000. */
  maxAttachments?: number;
  /** Most bytes of one TNEF attribute kept for its file name (attAttachTitle, attAttachment's MAPI properties); the data itself is never kept. Default 1 MiB. */
  maxTnefAttributeBytes?: number;
  /**
   * Reads every body line on its own and decodes base64 byte by byte, instead of taking runs
   * of body lines at once and counting base64 with the SIMD kernel. The same result, slower:
   * the reference the fast paths are tested against.
   */
  lineByLine?: boolean;
}

export interface ResolvedOptions {
  maxParts: number;
  maxDepth: number;
  maxHeaderBytes: number;
  maxPartHeaderBytes: number;
  maxLineBytes: number;
  maxAttachments: number;
  maxTnefAttributeBytes: number;
  lineByLine: boolean;
}

export function resolveOptions(o: AnalyserOptions = {}): ResolvedOptions {
  const int = (v: number | undefined, def: number, min: number): number =>
    v === undefined || !Number.isFinite(v) ? def : Math.max(min, Math.floor(v));
  const maxHeaderBytes = int(o.maxHeaderBytes, 1024 * 1024, 1024);
  return {
    maxParts: int(o.maxParts, 1000, 1),
    maxDepth: int(o.maxDepth, 50, 1),
    maxHeaderBytes,
    maxPartHeaderBytes: Math.min(maxHeaderBytes, 64 * 1024),
    maxLineBytes: int(o.maxLineBytes, 64 * 1024, 1024),
    maxAttachments: int(o.maxAttachments, 1000, 0),
    maxTnefAttributeBytes: int(o.maxTnefAttributeBytes, 1024 * 1024, 1024),
    lineByLine: o.lineByLine === true,
  };
}

/** Where the analyser's parts report what they found. */
export interface Reporter {
  defect(code: string): void;
}
