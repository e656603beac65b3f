/**
 * The body of a leaf part as its lines arrive: undoes the transfer encoding (counting the
 * decoded bytes) and hands the decoded bytes to the scanner its role needs. The line break
 * in front of the next boundary line belongs to the boundary, so each line's break is only
 * passed on once the next line shows it was content.
 */
import { TextScanner } from './attachments/text-scanner.js';
import type { FoundHandler } from './attachments/found.js';
import { TnefParser } from './attachments/tnef.js';
import type { LeafRole } from './mime-structure.js';
import { isUuEncoding } from './mime-structure.js';
import { createTransferDecoder, type ByteSink, type TransferDecoder } from './transfer-decoding.js';

const CRLF = Buffer.from('\r\n');
const LF = Buffer.from('\n');

export interface LeafBodyOptions {
  onFound: FoundHandler;
  onDefect: (code: string) => void;
  maxTnefAttributeBytes: number;
  /** Base64 decoded byte by byte even when only the size is needed (see Base64Decoder). */
  scalar?: boolean;
}

export class LeafBody {
  private readonly decoder: TransferDecoder;
  private readonly scanner: TextScanner | null = null;
  private readonly tnef: TnefParser | null = null;
  private pendingEol = 0;

  constructor(
    private readonly cte: string,
    readonly role: LeafRole,
    private readonly opts: LeafBodyOptions,
  ) {
    let sink: ByteSink | undefined;
    if (role === 'tnef') {
      const tnef = new TnefParser({ onFound: opts.onFound, onDefect: opts.onDefect, maxAttributeBytes: opts.maxTnefAttributeBytes });
      this.tnef = tnef;
      sink = (b) => tnef.write(b);
    } else if (role !== 'plain') {
      const scanner = new TextScanner({ bareBinHex: role === 'binhex-wrapper', onFound: opts.onFound, onDefect: opts.onDefect });
      this.scanner = scanner;
      sink = (b) => scanner.write(b);
    }
    this.decoder = createTransferDecoder(isUuEncoding(cte) ? '' : cte, sink, opts.scalar);
  }

  /** Decoded bytes so far. */
  get size(): number {
    return this.decoder.size;
  }

  line(data: Buffer, eol: number): void {
    if (this.pendingEol) this.decoder.write(this.pendingEol === 2 ? CRLF : LF);
    if (data.length > 0) this.decoder.write(data);
    this.pendingEol = eol;
  }

  /**
   * Whole lines at once: data[from, to) holds one or more lines, the last ending with its LF
   * at to - 1; the same as line() for each of them. Returns the last line's terminator length.
   */
  lines(data: Buffer, from: number, to: number): number {
    const eol = to - 2 >= from && data[to - 2] === 13 ? 2 : 1;
    if (this.pendingEol) this.decoder.write(this.pendingEol === 2 ? CRLF : LF);
    if (to - eol > from) this.decoder.write(data.subarray(from, to - eol));
    this.pendingEol = eol;
    return eol;
  }

  /** The part ends: at a boundary (the last line break was the boundary's) or at the end of the message. */
  end(atBoundary: boolean): void {
    if (this.pendingEol && !atBoundary) this.decoder.write(this.pendingEol === 2 ? CRLF : LF);
    this.pendingEol = 0;
    this.decoder.end();
    if (this.decoder.invalid) this.opts.onDefect(this.cte === 'base64' ? 'base64-invalid' : 'qp-invalid');
    this.scanner?.end();
    this.tnef?.end();
  }
}
