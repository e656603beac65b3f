/**
 * TNEF (MS-OXTNEF; Outlook's winmail.dat / application/ms-tnef), read as a stream far enough
 * to list the attached files: their names and sizes. Attribute data is never kept, except
 * attAttachTitle and attAttachment (MAPI properties, for the long file name) up to a cap.
 *
 * Stream: signature 0x223E9F78 (LE), legacy key (2 bytes), then attributes: level (1: message,
 * 2: attachment), id (4, LE: low word the attribute, high word its type), length (4, LE),
 * data, checksum (2, LE: the data bytes summed modulo 65536). An attachment's attributes
 * start with attAttachRendData.
 */
import { decodeCharset } from '../header-values.js';
import type { FoundHandler } from './found.js';

export const TNEF_SIGNATURE = 0x223e9f78;
export const ATT_ATTACH_REND_DATA = 0x00069002;
export const ATT_ATTACH_TITLE = 0x00018010;
export const ATT_ATTACH_DATA = 0x0006800f;
export const ATT_ATTACHMENT = 0x00069005;
export const ATT_OEM_CODEPAGE = 0x00069007;

const PR_DISPLAY_NAME = 0x3001;
const PR_ATTACH_FILENAME = 0x3704;
const PR_ATTACH_LONG_FILENAME = 0x3707;

interface Pending {
  title: string;
  longName: string;
  shortName: string;
  displayName: string;
  size: number;
  hasData: boolean;
}

export interface TnefParserOptions {
  onFound: FoundHandler;
  onDefect: (code: string) => void;
  /** Most bytes kept of one attAttachTitle / attAttachment attribute. */
  maxAttributeBytes: number;
}

export class TnefParser {
  private state: 'signature' | 'attr-header' | 'attr-data' | 'checksum' | 'dead' = 'signature';
  private readonly head = Buffer.alloc(9);
  private headLen = 0;
  private attrId = 0;
  private attrLength = 0;
  private attrSeen = 0;
  private attrSum = 0;
  private keep: Buffer[] | null = null;
  private keptBytes = 0;
  private keepTruncated = false;
  private codepage = 1252;
  private current: Pending | null = null;
  /** The stream is TNEF (its signature was right). */
  valid = false;

  constructor(private readonly opts: TnefParserOptions) {}

  write(data: Buffer): void {
    let i = 0;
    while (i < data.length && this.state !== 'dead') {
      switch (this.state) {
        case 'signature':
        case 'attr-header':
        case 'checksum': {
          const need = this.state === 'signature' ? 6 : this.state === 'attr-header' ? 9 : 2;
          const take = Math.min(need - this.headLen, data.length - i);
          data.copy(this.head, this.headLen, i, i + take);
          this.headLen += take;
          i += take;
          if (this.headLen === need) {
            this.headLen = 0;
            this.headDone();
          }
          break;
        }
        case 'attr-data': {
          const take = Math.min(this.attrLength - this.attrSeen, data.length - i);
          const piece = data.subarray(i, i + take);
          let sum = this.attrSum;
          for (let k = 0; k < piece.length; k++) sum += piece[k];
          this.attrSum = sum & 0xffff;
          if (this.keep) {
            const room = this.opts.maxAttributeBytes - this.keptBytes;
            if (room < piece.length) this.keepTruncated = true;
            if (room > 0) {
              const kept = Buffer.from(piece.subarray(0, Math.min(room, piece.length)));
              this.keep.push(kept);
              this.keptBytes += kept.length;
            }
          }
          this.attrSeen += take;
          i += take;
          if (this.attrId === ATT_ATTACH_DATA && this.current) this.current.size = this.attrSeen;
          if (this.attrSeen === this.attrLength) this.state = 'checksum';
          break;
        }
      }
    }
  }

  end(): void {
    if (this.state === 'signature' && this.headLen === 0 && !this.valid) return;
    if (this.state !== 'attr-header' || this.headLen !== 0) {
      if (this.state !== 'dead') this.opts.onDefect('tnef-truncated');
    }
    this.state = 'dead';
    this.emit();
  }

  private headDone(): void {
    const h = this.head;
    if (this.state === 'signature') {
      if (h.readUInt32LE(0) !== TNEF_SIGNATURE) {
        this.state = 'dead';
        this.opts.onDefect('tnef-invalid');
        return;
      }
      this.valid = true;
      this.state = 'attr-header';
      return;
    }
    if (this.state === 'checksum') {
      if (h.readUInt16LE(0) !== this.attrSum) this.opts.onDefect('tnef-checksum');
      this.attributeDone();
      this.state = 'attr-header';
      return;
    }
    const level = h[0];
    if (level !== 1 && level !== 2) {
      this.opts.onDefect('tnef-invalid');
      this.state = 'dead';
      this.emit();
      return;
    }
    this.attrId = h.readUInt32LE(1);
    this.attrLength = h.readUInt32LE(5);
    this.attrSeen = 0;
    this.attrSum = 0;
    this.keptBytes = 0;
    this.keepTruncated = false;
    const wanted = this.attrId === ATT_ATTACH_TITLE || this.attrId === ATT_ATTACHMENT || this.attrId === ATT_OEM_CODEPAGE;
    this.keep = wanted ? [] : null;
    if (this.attrId === ATT_ATTACH_REND_DATA) {
      this.emit();
      this.current = { title: '', longName: '', shortName: '', displayName: '', size: 0, hasData: false };
    } else if (this.attrId === ATT_ATTACH_DATA) {
      this.attachment().hasData = true;
      this.attachment().size = 0;
    }
    this.state = this.attrLength === 0 ? 'checksum' : 'attr-data';
  }

  private attachment(): Pending {
    if (!this.current) this.current = { title: '', longName: '', shortName: '', displayName: '', size: 0, hasData: false };
    return this.current;
  }

  private attributeDone(): void {
    const kept = this.keep ? Buffer.concat(this.keep) : null;
    this.keep = null;
    if (!kept) return;
    if (this.attrId === ATT_OEM_CODEPAGE) {
      if (kept.length >= 4) this.codepage = kept.readUInt32LE(0);
    } else if (this.attrId === ATT_ATTACH_TITLE) {
      this.attachment().title = this.string8(kept);
    } else if (this.attrId === ATT_ATTACHMENT) {
      if (this.keepTruncated) this.opts.onDefect('tnef-props-truncated');
      this.readProps(kept, this.attachment());
    }
  }

  private string8(b: Buffer): string {
    let end = b.indexOf(0);
    if (end < 0) end = b.length;
    const bytes = b.subarray(0, end);
    if (this.codepage === 65001) return bytes.toString('utf8');
    return decodeCharset(bytes, `windows-${this.codepage}`);
  }

  /** MAPI properties (MS-OXTNEF §2.1.3.4), read as far as they go, for the names. */
  private readProps(b: Buffer, att: Pending): void {
    let p = 0;
    const u32 = (): number => {
      if (p + 4 > b.length) throw new RangeError('props');
      const v = b.readUInt32LE(p);
      p += 4;
      return v;
    };
    const skip = (n: number): void => {
      if (n < 0 || p + n > b.length) throw new RangeError('props');
      p += n;
    };
    const fixedSize: Record<number, number> = {
      0x0001: 4, 0x0002: 4, 0x0003: 4, 0x0004: 4, 0x0005: 8, 0x0006: 8, 0x0007: 8,
      0x000a: 4, 0x000b: 4, 0x0014: 8, 0x0040: 8, 0x0048: 16,
    };
    try {
      const count = u32();
      for (let n = 0; n < count && p < b.length; n++) {
        const tag = u32();
        const type = tag & 0xffff;
        const id = tag >>> 16;
        if (id >= 0x8000) {
          skip(16); // GUID
          const kind = u32();
          if (kind === 0) u32();
          else {
            const len = u32();
            skip(len + ((4 - (len % 4)) % 4));
          }
        }
        const base = type & 0x0fff;
        const multi = (type & 0x1000) !== 0;
        const variable = base === 0x001e || base === 0x001f || base === 0x0102 || base === 0x000d;
        const values = variable || multi ? u32() : 1;
        if (values > b.length) return;
        for (let v = 0; v < values; v++) {
          if (variable) {
            const len = u32();
            const start = p;
            skip(len);
            skip((4 - (len % 4)) % 4);
            if (v === 0 && (id === PR_ATTACH_LONG_FILENAME || id === PR_ATTACH_FILENAME || id === PR_DISPLAY_NAME)) {
              const raw = b.subarray(start, start + len);
              let text: string;
              if (base === 0x001f) {
                text = raw.toString('utf16le');
                const nul = text.indexOf('\u0000');
                if (nul >= 0) text = text.slice(0, nul);
              } else if (base === 0x001e) text = this.string8(raw);
              else continue;
              if (id === PR_ATTACH_LONG_FILENAME) att.longName = text;
              else if (id === PR_ATTACH_FILENAME) att.shortName = text;
              else att.displayName = text;
            }
          } else {
            const size = fixedSize[base];
            if (size === undefined) return; // unknown type: cannot go on
            skip(size);
          }
        }
      }
    } catch {
      // truncated properties: keep what was read
    }
  }

  private emit(): void {
    const a = this.current;
    this.current = null;
    if (!a) return;
    const name = a.longName || a.title || a.shortName || a.displayName;
    if (!name && !a.hasData) return;
    this.opts.onFound({ kind: 'tnef', name, size: a.size });
  }
}
