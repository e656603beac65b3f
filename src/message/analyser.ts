/**
 * MessageAnalyser: reads a stored message as it arrives, in chunks of any size, and reports
 * its top-level header, subject, From/To/Cc addresses, MIME structure and attachments, as
 * ProcessMessage and CheckRecipients need them (spec: vpop3-smtpsvr-lua.txt; SEMANTICS S19,
 * S21). Memory stays bounded whatever the input: lines are read in pieces past maxLineBytes,
 * headers are kept up to a budget, nesting and the number of rows are capped, part bodies
 * are never kept (only counted, and decoded where a scanner needs the content). Malformed
 * input gives a best-effort result and a list of defects, never an exception.
 *
 *   const a = new MessageAnalyser({ maxParts: 500 });
 *   a.write(chunk); ...
 *   const result = a.end();
 *
 * See types.ts for the meaning of every field (Path numbering, Start/End, attachment types).
 */
import type { FoundFile } from './attachments/found.js';
import { HeaderCollector } from './header-parser.js';
import {
  decodeWords,
  mimeTypeForName,
  paramFilename,
  parseAddressList,
  parseContentDisposition,
  parseContentType,
  parseTransferEncoding,
} from './header-values.js';
import { LeafBody } from './leaf-body.js';
import { LineSplitter } from './line-splitter.js';
import {
  CLOSE_DELIMITER,
  encapsulatedSlot,
  entityPath,
  isEncapsulatedMessage,
  isIdentityEncoding,
  leafRole,
  matchBoundary,
  partSlot,
  type Slot,
} from './mime-structure.js';
import {
  resolveOptions,
  type AnalyserOptions,
  type AnalysisResult,
  type Attachment,
  type AttachmentType,
  type MimePart,
  type ResolvedOptions,
} from './types.js';

const DASHES = Buffer.from('--');

const PART_FIELDS = new Set(['content-type', 'content-disposition', 'content-transfer-encoding']);
const keepPartField = (key: string): boolean => PART_FIELDS.has(key);

interface Entity {
  slot: Slot;
  depth: number;
  /** Offset of the first byte of the entity's header. */
  start: number;
  /** The enclosing multipart is multipart/digest (default type message/rfc822). */
  inDigest: boolean;
  kind: 'header' | 'multipart' | 'message' | 'leaf';
  header: HeaderCollector | null;
  bodyStart: number;
  row: MimePart | null;
  /** 1-based index of the row. */
  rowIndex: number;
  numBase: string;
  /** "--boundary" of a multipart. */
  boundary: Buffer | null;
  /** 0 preamble, 1 between parts, 2 epilogue (after the close delimiter). */
  mpState: number;
  children: number;
  digest: boolean;
  leaf: LeafBody | null;
  /** The MIME attachment row of this part, its Size filled in when the part ends. */
  attachment: Attachment | null;
  /** A wrapper part listed as MIME only when nothing was found in it. */
  fallback: Attachment | null;
  found: number;
}

export class MessageAnalyser {
  private readonly opts: ResolvedOptions;
  private readonly splitter: LineSplitter;
  private readonly stack: Entity[] = [];
  private readonly rows: MimePart[] = [];
  private readonly attachments: Attachment[] = [];
  private readonly defects = new Set<string>();
  private truncated = false;
  private topHeader: HeaderCollector | null = null;
  /**
   * Boundaries (as Latin-1 strings, without the leading "--") of the multiparts on the stack
   * still looking for them, with how many multiparts use each: a line is checked against the
   * stack only when it could be one of them.
   */
  private readonly active = new Map<string, number>();
  /** Terminator length of the previous line. */
  private prevEol = 0;
  private ended = false;
  private longestBoundary = 0;

  constructor(options: AnalyserOptions = {}) {
    this.opts = resolveOptions(options);
    this.splitter = new LineSplitter(this.opts.maxLineBytes, (d, o, e, c, p) => this.onLine(d, o, e, c, p));
    const top = this.newEntity({ kind: 'body', prefix: '' }, 0, 0, false);
    top.header = new HeaderCollector(this.opts.maxHeaderBytes, undefined, true);
    this.stack.push(top);
  }

  /** Bytes of the stored message, in order; any chunk size. */
  write(chunk: Uint8Array): void {
    if (this.ended) throw new Error('MessageAnalyser.write after end');
    const c = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    // Line by line, except runs of body lines (see bodyRun); the splitter stops at the start
    // of a body so that they can be taken.
    for (let pos = 0; pos < c.length; ) {
      pos = this.bodyRun(c, pos);
      if (pos < c.length) pos = this.splitter.write(c, pos);
    }
  }

  /**
   * In a leaf body, at a line start: the whole lines from `pos` that cannot be boundaries
   * (none starts with "--") nor too long go to the leaf at once, the same as one by one.
   * Returns where the run ends (`pos` when there is none).
   */
  private bodyRun(c: Buffer, pos: number): number {
    const e = this.stack[this.stack.length - 1];
    if (e.kind !== 'leaf' || !this.splitter.atLineStart || this.opts.lineByLine) return pos;
    let end: number;
    if (this.active.size > 0) {
      if (c[pos] === 45) return pos;
      // The first "--" at a line start; "-" is rare in bodies and not in base64 at all.
      let d = c.indexOf(DASHES, pos);
      while (d > 0 && c[d - 1] !== 10) d = c.indexOf(DASHES, d + 1);
      end = d > 0 ? d : c.lastIndexOf(10) + 1;
    } else {
      end = c.lastIndexOf(10) + 1;
    }
    // Lines longer than maxLineBytes are read in pieces and noted: line by line from there.
    // Every line starting in [s, lf] ends by lf, so each window of maxLine bytes with an LF
    // clears the lines up to it.
    const max = this.opts.maxLineBytes;
    for (let s = pos; end - s > max + 1; ) {
      const lf = c.lastIndexOf(10, s + max);
      if (lf < s) {
        end = s;
        break;
      }
      s = lf + 1;
    }
    if (end <= pos) return pos;
    this.prevEol = e.leaf!.lines(c, pos, end);
    this.splitter.advance(end - pos);
    return end;
  }

  /** The message is complete. */
  end(): AnalysisResult {
    if (this.ended) throw new Error('MessageAnalyser.end called twice');
    this.ended = true;
    this.splitter.end();
    const size = this.splitter.bytes;
    while (this.stack.length > 0) this.close(this.stack.pop()!, size, false);
    return this.result(size);
  }

  private defect(code: string, truncates = false): void {
    this.defects.add(code);
    if (truncates) this.truncated = true;
  }

  private newEntity(slot: Slot, depth: number, start: number, inDigest: boolean): Entity {
    return {
      slot, depth, start, inDigest,
      kind: 'header',
      header: null,
      bodyStart: start,
      row: null,
      rowIndex: 0,
      numBase: '',
      boundary: null,
      mpState: 0,
      children: 0,
      digest: false,
      leaf: null,
      attachment: null,
      fallback: null,
      found: 0,
    };
  }

  private pushPart(slot: Slot, depth: number, start: number, inDigest: boolean): Entity {
    const e = this.newEntity(slot, depth, start, inDigest);
    e.header = new HeaderCollector(this.opts.maxPartHeaderBytes, keepPartField);
    this.stack.push(e);
    return e;
  }

  /** Returns whether a leaf body goes on after this line (the splitter may stop for bodyRun). */
  private onLine(data: Buffer, offset: number, eol: number, cont: boolean, partial: boolean): boolean {
    if (partial) this.defect('line-too-long');
    if (this.active.size > 0 && !cont && !partial && data.length >= 2 && data[0] === 45 && data[1] === 45 && this.mayBeBoundary(data)) {
      for (let k = this.stack.length - 1; k >= 0; k--) {
        const e = this.stack[k];
        if (e.kind !== 'multipart' || e.mpState === 2) continue;
        const m = matchBoundary(data, e.boundary!);
        if (m) {
          this.onBoundary(k, m === CLOSE_DELIMITER, offset, offset + data.length + eol);
          this.prevEol = eol;
          return false;
        }
      }
    }
    this.dispatch(data, offset, eol, cont);
    this.prevEol = eol;
    return this.stack[this.stack.length - 1].kind === 'leaf';
  }

  /** Whether the line ("--" + something) could be a delimiter of one of the active boundaries. */
  private mayBeBoundary(line: Buffer): boolean {
    let end = line.length;
    while (end > 2 && (line[end - 1] === 32 || line[end - 1] === 9)) end--;
    if (end - 2 > this.longestBoundary) return false;
    const key = line.toString('latin1', 2, end);
    if (this.active.has(key)) return true;
    return key.endsWith('--') && this.active.has(key.slice(0, -2));
  }

  private activate(e: Entity): void {
    const key = e.boundary!.toString('latin1', 2);
    const n = this.active.get(key) ?? 0;
    if (n > 0) this.defect('nested-identical-boundary');
    this.active.set(key, n + 1);
    this.longestBoundary = Math.max(this.longestBoundary, key.length + 2);
  }

  private deactivate(e: Entity): void {
    const key = e.boundary!.toString('latin1', 2);
    const n = this.active.get(key) ?? 0;
    if (n <= 1) this.active.delete(key);
    else this.active.set(key, n - 1);
  }

  private dispatch(data: Buffer, offset: number, eol: number, cont: boolean): void {
    const e = this.stack[this.stack.length - 1];
    switch (e.kind) {
      case 'header': {
        if (!cont && data.length === 0) {
          this.finishHeader(e, offset + eol, false);
          return;
        }
        if (e.header!.line(data, cont) === 'not-header') {
          // No blank line before the body: the body starts with this line.
          this.defect('header-missing-separator');
          this.finishHeader(e, offset, false);
          this.dispatch(data, offset, eol, cont);
        }
        return;
      }
      case 'leaf':
        e.leaf!.line(data, eol);
        return;
      default:
        // A multipart's preamble or epilogue: not part of any part.
        return;
    }
  }

  private onBoundary(k: number, close: boolean, lineOffset: number, afterLine: number): void {
    const end = lineOffset - this.prevEol;
    while (this.stack.length - 1 > k) this.close(this.stack.pop()!, end, true);
    const mp = this.stack[k];
    if (close) {
      mp.mpState = 2;
      this.deactivate(mp);
      return;
    }
    mp.mpState = 1;
    mp.children++;
    this.pushPart(partSlot(mp.numBase, mp.children), mp.depth + 1, afterLine, mp.digest);
  }

  /**
   * The header of `e` is complete: decide what the entity is, give it its row, and set up
   * its body. `closing`: the entity ends here too (no body follows).
   */
  private finishHeader(e: Entity, bodyStart: number, closing: boolean): void {
    const h = e.header!;
    h.finish();
    e.header = null;
    e.bodyStart = bodyStart;
    if (h.overflow) this.defect('header-too-long', true);
    if (h.eightBit) this.defect('header-8bit');
    if (h.malformed) this.defect('header-malformed');
    if (e.depth === 0) this.topHeader = h;

    const ct = parseContentType(h.get('content-type')?.value, e.inDigest ? 'message/rfc822' : 'text/plain');
    const cd = parseContentDisposition(h.get('content-disposition')?.value);
    const cte = parseTransferEncoding(h.get('content-transfer-encoding')?.value);
    const typeName = paramFilename(ct.params, ct.decoded, 'name');
    const dispName = paramFilename(cd.params, cd.decoded, 'filename');

    let kind: Entity['kind'] = 'leaf';
    if (ct.type === 'multipart') {
      const b = ct.params.boundary;
      if (!b) this.defect('multipart-no-boundary');
      else if (e.depth >= this.opts.maxDepth) this.defect('too-deep', true);
      else {
        kind = 'multipart';
        e.boundary = Buffer.from(`--${b}`, h.get('content-type')!.latin1 ? 'latin1' : 'utf8');
        e.digest = ct.subtype === 'digest';
      }
    } else if (isEncapsulatedMessage(ct) && isIdentityEncoding(cte)) {
      if (e.depth >= this.opts.maxDepth) this.defect('too-deep', true);
      else kind = 'message';
    }
    e.kind = kind;

    const { path, numBase } = entityPath(e.slot, kind === 'multipart');
    e.numBase = numBase;
    if (this.rows.length < this.opts.maxParts) {
      e.row = {
        Path: path,
        ContentType: ct.type,
        ContentSubtype: ct.subtype,
        ContentTypeFilename: typeName,
        ContentDisposition: cd.disposition,
        ContentDispositionFilename: dispName,
        Start: e.start,
        End: e.start,
      };
      this.rows.push(e.row);
      e.rowIndex = this.rows.length;
    } else {
      this.defect('too-many-parts', true);
    }

    const mimeType = ct.subtype ? `${ct.type}/${ct.subtype}` : ct.type;
    const name = dispName || typeName;
    const isAttachment = cd.disposition === 'attachment' || name !== '';

    if (kind === 'multipart') {
      this.activate(e);
      return;
    }
    if (kind === 'message') {
      if (isAttachment) e.attachment = this.addAttachment(e, name, mimeType, 'MIME');
      if (!closing) this.pushPart(encapsulatedSlot(path), e.depth + 1, bodyStart, false);
      return;
    }
    const role = leafRole(ct, cte, [dispName, typeName]);
    const wrapper = role === 'uu-wrapper' || role === 'binhex-wrapper';
    if (isAttachment && !wrapper) e.attachment = this.addAttachment(e, name, mimeType, 'MIME');
    if (isAttachment && wrapper && e.row) {
      e.fallback = { MIMESection: e.rowIndex, Name: name, MIMEType: mimeType, Size: 0, Type: 'MIME' };
    }
    e.leaf = new LeafBody(cte, role, {
      onFound: (f) => this.onFound(e, f),
      onDefect: (c) => this.defect(c),
      maxTnefAttributeBytes: this.opts.maxTnefAttributeBytes,
      scalar: this.opts.lineByLine,
    });
  }

  private addAttachment(e: Entity, name: string, mimeType: string, type: AttachmentType): Attachment | null {
    if (!e.row) return null;
    if (this.attachments.length >= this.opts.maxAttachments) {
      this.defect('too-many-attachments', true);
      return null;
    }
    const a: Attachment = { MIMESection: e.rowIndex, Name: name, MIMEType: mimeType, Size: 0, Type: type };
    this.attachments.push(a);
    return a;
  }

  private onFound(e: Entity, f: FoundFile): void {
    e.found++;
    const role = e.leaf?.role;
    const type: AttachmentType =
      f.kind === 'tnef' ? 'TNEF' : f.kind === 'uue' ? (role === 'uu-wrapper' ? 'MIMEUUE' : 'UUE') : role === 'binhex-wrapper' ? 'MIMEBINHEX' : 'BINHEX';
    const a = this.addAttachment(e, f.name, mimeTypeForName(f.name), type);
    if (a) a.Size = f.size;
  }

  /** The entity ends at `end` (exclusive); `atBoundary`: a boundary line follows. */
  private close(e: Entity, end: number, atBoundary: boolean): void {
    end = Math.max(e.start, end);
    if (e.kind === 'header') this.finishHeader(e, end, true);
    if (e.kind === 'leaf') {
      e.leaf!.end(atBoundary);
      if (e.attachment) e.attachment.Size = e.leaf!.size;
      if (e.fallback && e.found === 0) {
        const a = this.addAttachment(e, e.fallback.Name, e.fallback.MIMEType, 'MIME');
        if (a) a.Size = e.leaf!.size;
      }
      e.leaf = null;
    } else if (e.kind === 'multipart') {
      if (e.mpState !== 2) {
        this.deactivate(e);
        this.defect(e.children === 0 ? 'boundary-not-found' : 'multipart-unterminated');
      }
    } else if (e.kind === 'message') {
      if (e.attachment) e.attachment.Size = Math.max(0, end - e.bodyStart);
    }
    if (e.row) e.row.End = end;
  }

  private result(size: number): AnalysisResult {
    const fields = this.topHeader?.fields ?? [];
    const all = (key: string): string =>
      fields
        .filter((f) => f.key === key)
        .map((f) => f.value)
        .join(', ');
    const subject = fields.find((f) => f.key === 'subject');
    return {
      headers: fields.map((f) => ({ name: f.name, value: f.value })),
      subject: subject ? decodeWords(subject.value) : '',
      from: parseAddressList(all('from')),
      to: parseAddressList(all('to')),
      cc: parseAddressList(all('cc')),
      structure: this.rows,
      attachments: this.attachments,
      size,
      defects: [...this.defects],
      truncated: this.truncated,
    };
  }
}
