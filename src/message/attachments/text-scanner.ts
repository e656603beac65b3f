/**
 * Looks for uuencoded and BinHex files in the decoded content of a part, line by line, with
 * bounded memory (long lines are read in pieces, which can be neither "begin" nor data lines
 * of uuencode; BinHex data does not care about lines).
 */
import { LineSplitter } from '../line-splitter.js';
import { BinHexDecoder, BINHEX_MARKER } from './binhex.js';
import type { FoundHandler } from './found.js';
import { UuBlock, uuBeginName } from './uuencode.js';

export interface TextScannerOptions {
  /** BinHex data may start with ":" without the "(This file must be converted...)" line (an application/mac-binhex40 part). */
  bareBinHex: boolean;
  onFound: FoundHandler;
  onDefect: (code: string) => void;
}

const MAX_LINE = 4096;
/** Non-blank lines tolerated between the BinHex marker line and the data's ":". */
const BINHEX_GAP = 3;

export class TextScanner {
  private readonly splitter: LineSplitter;
  private mode: 'scan' | 'uue' | 'binhex-wait' | 'binhex-data' | 'binhex-skip' = 'scan';
  private uu: UuBlock | null = null;
  private bh: BinHexDecoder | null = null;
  private gap = 0;

  constructor(private readonly opts: TextScannerOptions) {
    this.splitter = new LineSplitter(MAX_LINE, (data, _o, _eol, cont) => this.line(data, cont));
  }

  write(data: Buffer): void {
    this.splitter.write(data);
  }

  end(): void {
    this.splitter.end();
    if (this.mode === 'uue') this.endUu(false);
    else if (this.mode === 'binhex-data') this.endBinHex(false);
  }

  private line(data: Buffer, cont: boolean): void {
    switch (this.mode) {
      case 'scan':
        return this.scan(data, cont);
      case 'uue': {
        const r = cont ? 'bad' : this.uu!.line(data);
        if (r === 'end') this.endUu(true);
        else if (r === 'bad') {
          this.endUu(false);
          this.scan(data, cont);
        }
        return;
      }
      case 'binhex-wait': {
        let i = 0;
        while (i < data.length && (data[i] === 32 || data[i] === 9)) i++;
        if (i === data.length) return;
        if (!cont && data[i] === 58 /* : */) {
          this.mode = 'binhex-data';
          this.bh = new BinHexDecoder();
          this.binHexData(data.subarray(i + 1));
          return;
        }
        if (++this.gap > BINHEX_GAP) this.mode = 'scan';
        return;
      }
      case 'binhex-data':
      case 'binhex-skip':
        this.binHexData(data);
        return;
    }
  }

  private scan(data: Buffer, cont: boolean): void {
    if (cont || data.length === 0) return;
    const c = data[0];
    if (c === 0x62 /* b */) {
      const name = uuBeginName(data);
      if (name !== null) {
        this.uu = new UuBlock(name);
        this.mode = 'uue';
      }
    } else if (c === 0x28 /* ( */) {
      if (data.length >= BINHEX_MARKER.length && data.subarray(0, BINHEX_MARKER.length).toString('latin1').toLowerCase() === BINHEX_MARKER.toLowerCase()) {
        this.mode = 'binhex-wait';
        this.gap = 0;
      }
    } else if (c === 58 /* : */ && this.opts.bareBinHex) {
      this.mode = 'binhex-data';
      this.bh = new BinHexDecoder();
      this.binHexData(data.subarray(1));
    }
  }

  /** Characters of BinHex data, up to the closing ":". */
  private binHexData(data: Buffer): void {
    const colon = data.indexOf(58);
    const chars = colon < 0 ? data : data.subarray(0, colon);
    if (this.mode === 'binhex-data') {
      this.bh!.write(chars);
      if (this.bh!.done) this.endBinHex(true);
    }
    if (colon >= 0) {
      if (this.mode === 'binhex-data') this.endBinHex(false);
      this.mode = 'scan';
    }
  }

  /** Reports the file when its header is known; `more`: the data goes on, skip it up to the ":". */
  private endBinHex(more: boolean): void {
    const bh = this.bh!;
    this.bh = null;
    if (bh.header) {
      if (!bh.header.crcOk) this.opts.onDefect('binhex-crc');
      this.opts.onFound({ kind: 'binhex', name: bh.header.name, size: bh.header.dataLength });
    } else {
      this.opts.onDefect(bh.invalid ? 'binhex-invalid' : 'binhex-truncated');
    }
    this.mode = more && !bh.invalid ? 'binhex-skip' : 'scan';
  }

  private endUu(complete: boolean): void {
    const uu = this.uu!;
    this.uu = null;
    this.mode = 'scan';
    if (!uu.confirmed) return; // a "begin" line that was just text
    if (!complete) this.opts.onDefect('uue-unterminated');
    this.opts.onFound({ kind: 'uue', name: uu.name, size: uu.size });
  }
}
