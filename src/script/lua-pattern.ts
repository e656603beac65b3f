/**
 * Lua 5.4's pattern matcher (lstrlib.c: match, max_expand, min_expand, captures, %b, %f,
 * back-references), ported to TypeScript so that it runs under the script budgets. In C it runs
 * as one call that the count hook cannot interrupt, and a backtracking pattern such as
 * `string.rep("a", 600):find(".-.-.-b")` would block the process for a minute.
 *
 * It works on bytes with the C locale's character classes (ASCII), as Lua does, and raises
 * Lua's own messages for malformed patterns. Positions are indices into the arrays given, so
 * the VM can match Lua strings in place in the wasm heap: a "pointer" here is an index, and -1
 * stands for C's NULL.
 *
 * Work is counted in steps (one per `match` call, per character a repetition or %b scans, and
 * a share of the length of long sets and back-references); every `checkEvery` steps the
 * caller's budget check runs, and it stops the match by throwing.
 */

import { RUN_HEADER, runHeader, type NativeScan } from './class-scan.js';
import { QUICK_DIR, QUICK_DIR_SIZE } from './quick-find.js';

export const LUA_MAXCAPTURES = 32;
/** Capture length markers (lstrlib.c). */
export const CAP_UNFINISHED = -1;
export const CAP_POSITION = -2;
/** Maximum recursion depth of `match` (lstrlib.c MAXCCALLS). */
const MAXCCALLS = 200;
const CHECK_EVERY = 4096;
/** Patterns kept compiled (PatternMatcher.compiled). */
const CACHED_PATTERNS = QUICK_DIR.entries;
/** Longer patterns are not compiled (a script's own patterns are short; tables cost memory). */
const MAX_COMPILED = 128;
/** Longer runs of classes are matched the general way. */
const MAX_RUN = 32;

/** A pattern as PatternMatcher.compiled describes it. */
interface Compiled {
  text: Uint8Array;
  run: boolean;
  k: number;
  tables: Uint8Array[];
  /** The tables in the heap, after their header (class-scan.ts), or 0. */
  block: number;
  /** The copy of `text` in the heap for the quick path's directory (0 when none). */
  textPtr: number;
}

const L_ESC = 0x25; // %
const SPECIALS = '^$*+?.([%-';

/** A malformed pattern or capture: the message is Lua's, without the position prefix. */
export class PatternError extends Error {
  override name = 'PatternError';
}

/** Receives the steps done since the last call; throws to stop the match. */
export type BudgetCheck = (steps: number) => void;

// ctype.h in the C locale.
const ALPHA = 1 << 0;
const CNTRL = 1 << 1;
const DIGIT = 1 << 2;
const GRAPH = 1 << 3;
const LOWER = 1 << 4;
const PUNCT = 1 << 5;
const SPACE = 1 << 6;
const UPPER = 1 << 7;
const ALNUM = 1 << 8;
const XDIGIT = 1 << 9;
const NUL = 1 << 10;

const CTYPE = new Uint16Array(256);
for (let c = 0; c < 256; c++) {
  let t = 0;
  const upper = c >= 0x41 && c <= 0x5a;
  const lower = c >= 0x61 && c <= 0x7a;
  const digit = c >= 0x30 && c <= 0x39;
  if (upper) t |= UPPER | ALPHA | ALNUM;
  if (lower) t |= LOWER | ALPHA | ALNUM;
  if (digit) t |= DIGIT | ALNUM | XDIGIT;
  if ((c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66)) t |= XDIGIT;
  if (c < 0x20 || c === 0x7f) t |= CNTRL;
  if (c === 0x20 || (c >= 0x09 && c <= 0x0d)) t |= SPACE;
  if (c > 0x20 && c < 0x7f) {
    t |= GRAPH;
    if (!upper && !lower && !digit) t |= PUNCT;
  }
  if (c === 0) t |= NUL;
  CTYPE[c] = t;
}

/** The ctype bit a class letter (either case) tests; 0 for a character that is no class. */
const CLASS_BIT = new Uint16Array(256);
for (const [letter, bit] of [
  ['a', ALPHA],
  ['c', CNTRL],
  ['d', DIGIT],
  ['g', GRAPH],
  ['l', LOWER],
  ['p', PUNCT],
  ['s', SPACE],
  ['u', UPPER],
  ['w', ALNUM],
  ['x', XDIGIT],
  ['z', NUL], // deprecated, still in 5.4
] as const) {
  CLASS_BIT[letter.charCodeAt(0)] = bit;
  CLASS_BIT[letter.toUpperCase().charCodeAt(0)] = bit;
}

/** match_class: `cl` is the character after '%'. */
function matchClass(c: number, cl: number): boolean {
  const bit = CLASS_BIT[cl];
  if (bit === 0) return cl === c;
  const res = (CTYPE[c] & bit) !== 0;
  return cl >= 0x61 ? res : !res;
}

const SPECIAL = new Uint8Array(256);
for (const ch of SPECIALS) SPECIAL[ch.charCodeAt(0)] = 1;

/** nospecials: no byte of P[p..pEnd) is one of ^$*+?.([%- (so find may search plainly). */
export function noSpecials(P: Uint8Array, p: number, pEnd: number): boolean {
  for (let i = p; i < pEnd; i++) if (SPECIAL[P[i]]) return false;
  return true;
}

/** Bytes that begin a single-character class in `match` (not a capture, nor '$' at the end). */
const SIMPLE_START = new Uint8Array(256).fill(1);
for (const ch of '()$') SIMPLE_START[ch.charCodeAt(0)] = 0;
/** After '%', the items that are no single-character class: %b, %f, back-references. */
const ESCAPE_ITEM = new Uint8Array(256);
for (const ch of 'bf0123456789') ESCAPE_ITEM[ch.charCodeAt(0)] = 1;

/**
 * One matcher, reused call after call (matching never re-enters it: no Lua code runs inside).
 * The subject is S[srcInit..srcEnd), the pattern P[..pEnd).
 */
export class PatternMatcher {
  private S: Uint8Array = new Uint8Array(0);
  private P: Uint8Array = new Uint8Array(0);
  srcInit = 0;
  srcEnd = 0;
  private pEnd = 0;
  private matchdepth = MAXCCALLS;
  /** Captures of the last match: count, start index, and length or CAP_POSITION/CAP_UNFINISHED. */
  level = 0;
  readonly capInit = new Int32Array(LUA_MAXCAPTURES);
  readonly capLen = new Int32Array(LUA_MAXCAPTURES);
  /** End (exclusive) of the last match. */
  end = -1;
  private fuel: number;

  constructor(
    private readonly check: BudgetCheck | null = null,
    private readonly checkEvery = CHECK_EVERY,
    /** Searches subjects in the wasm heap natively (class-scan.ts); others are searched in JS. */
    private readonly native: NativeScan | null = null,
  ) {
    this.fuel = checkEvery;
    if (native !== null) {
      const dir = native.alloc(QUICK_DIR_SIZE);
      if (dir) {
        const h = native.heap();
        h.fill(0, dir, dir + QUICK_DIR_SIZE);
        // Every slot empty: a length no pattern has.
        const view = new DataView(h.buffer, h.byteOffset);
        for (let i = 0; i < QUICK_DIR.entries; i++) view.setInt32(dir + i * QUICK_DIR.entrySize + QUICK_DIR.len, -1, true);
        this.quickDir = dir;
      }
    }
  }

  /** The heap address of the directory of compiled runs for quick-find.ts, or 0. */
  readonly quickDir: number = 0;

  /** Steps done since the last budget check, which are then forgotten (the caller charges them). */
  takeSteps(): number {
    const used = this.checkEvery - this.fuel;
    this.fuel = this.checkEvery;
    return used;
  }

  /** Charges `n` steps, running the budget check when they add up. */
  spend(n: number): void {
    if ((this.fuel -= n) <= 0) this.refuel();
  }

  private refuel(): void {
    const used = this.checkEvery - this.fuel;
    this.fuel = this.checkEvery;
    this.check?.(used);
  }

  /**
   * Finds the first match starting at or after `init` (and at most at srcEnd), as str_find_aux,
   * gmatch_aux and str_gsub try one position after another. Returns the start, or -1; the end
   * and captures are left in `end`, `level`, `capInit` and `capLen`.
   *
   * @param anchorable a '^' at the start of the pattern anchors the match at `init` (find,
   *   match and gsub; gmatch takes it literally)
   * @param lastMatch the end of the previous match of gsub/gmatch (else -1): a match ending there
   *   (an empty match right after it) is skipped
   */
  find(S: Uint8Array, srcInit: number, srcEnd: number, init: number, P: Uint8Array, pInit: number, pEnd: number, anchorable: boolean, lastMatch = -1): number {
    this.S = S;
    this.P = P;
    this.srcInit = srcInit;
    this.srcEnd = srcEnd;
    this.pEnd = pEnd;
    let p = pInit;
    const anchor = anchorable && p < pEnd && P[p] === 0x5e;
    if (anchor) p++;
    if (init > srcEnd) return -1;
    // What the pattern can be searched by (compiled once, kept for the next calls): a run of
    // single-character classes is matched by a scan alone; otherwise a pattern that starts with
    // a class that must match once (no suffix, or '+') can only match where the class does, and
    // the search skips to there instead of trying every position.
    const c = anchor || pEnd - p > MAX_COMPILED ? null : this.compiled(p, pEnd);
    if (c !== null && c.run) return this.findRun(c, init, lastMatch);
    const skip = c !== null && c.k === 1;
    let s1 = init;
    for (;;) {
      if (skip) {
        const from = s1;
        s1 = this.skipTo(s1, c);
        this.spend((s1 - from) >> 3);
        if (s1 >= srcEnd) return -1;
      }
      this.level = 0;
      this.matchdepth = MAXCCALLS;
      const e = this.match(s1, p);
      if (e !== -1 && e !== lastMatch) {
        this.end = e;
        return s1;
      }
      if (anchor || s1 >= srcEnd) return -1;
      s1++;
    }
  }

  /** The first match of a run of classes from `init` on (see compiled), as find returns it. */
  private findRun(c: Compiled, init: number, lastMatch: number): number {
    const k = c.k;
    let s = init;
    for (;;) {
      const at = this.searchRun(c, s, k);
      this.spend((((at < 0 ? this.srcEnd : at) - s) >> 3) + 1);
      if (at < 0) return -1;
      // A match is never empty here, but one ending where the last one did is skipped still.
      if (at + k !== lastMatch) {
        this.level = 0;
        this.end = at + k;
        return at;
      }
      s = at + 1;
    }
  }

  /** The first index from `s` on where the first `k` classes of `c` match in a row, or -1. */
  private searchRun(c: Compiled, s: number, k: number): number {
    const S = this.S;
    const srcEnd = this.srcEnd;
    const native = this.native;
    if (native !== null && c.block !== 0 && S === native.heap()) return native.run(s, srcEnd, c.block, k);
    const tables = c.tables;
    outer: for (let i = s; i + k <= srcEnd; i++) {
      for (let j = 0; j < k; j++) if (!tables[j][S[i + j]]) continue outer;
      return i;
    }
    return -1;
  }

  private match(s: number, p: number): number {
    if (this.matchdepth-- === 0) throw new PatternError('pattern too complex');
    if (--this.fuel <= 0) this.refuel();
    const P = this.P;
    const pEnd = this.pEnd;
    // `continue` is lstrlib.c's `goto init` (tail recursion); `break` leaves with `s`.
    for (;;) {
      if (p === pEnd) break;
      const pc = P[p];
      if (pc === 0x28) {
        // '(' start capture; '()' position capture
        if (p + 1 < pEnd && P[p + 1] === 0x29) s = this.startCapture(s, p + 2, CAP_POSITION);
        else s = this.startCapture(s, p + 1, CAP_UNFINISHED);
        break;
      }
      if (pc === 0x29) {
        s = this.endCapture(s, p + 1);
        break;
      }
      if (pc === 0x24 && p + 1 === pEnd) {
        // '$' as the last character: end of subject
        if (s !== this.srcEnd) s = -1;
        break;
      }
      if (pc === L_ESC && p + 1 < pEnd) {
        const nc = P[p + 1];
        if (nc === 0x62) {
          // %bxy
          s = this.matchBalance(s, p + 2);
          if (s !== -1) {
            p += 4;
            continue;
          }
          break;
        }
        if (nc === 0x66) {
          // %f[set]
          p += 2;
          if (p >= pEnd || P[p] !== 0x5b) throw new PatternError("missing '[' after '%f' in pattern");
          const ep = this.classEnd(p);
          const previous = s === this.srcInit ? 0 : this.S[s - 1];
          const current = s < this.srcEnd ? this.S[s] : 0;
          if (!this.matchBracketClass(previous, p, ep - 1) && this.matchBracketClass(current, p, ep - 1)) {
            p = ep;
            continue;
          }
          s = -1;
          break;
        }
        if (nc >= 0x30 && nc <= 0x39) {
          // %0-%9 back-reference
          s = this.matchCapture(s, nc);
          if (s !== -1) {
            p += 2;
            continue;
          }
          break;
        }
        // any other escape is a single-character class: default
      }
      // A single-character class with an optional suffix.
      const ep = this.classEnd(p);
      const epc = ep < pEnd ? P[ep] : 0;
      if (!this.singleMatch(s, p, ep)) {
        if (epc === 0x2a || epc === 0x3f || epc === 0x2d) {
          // '*', '?', '-' accept zero
          p = ep + 1;
          continue;
        }
        s = -1;
        break;
      }
      if (epc === 0x3f) {
        // '?'
        const res = this.match(s + 1, ep + 1);
        if (res !== -1) {
          s = res;
          break;
        }
        p = ep + 1;
        continue;
      }
      if (epc === 0x2b) {
        // '+': one already matched
        s = this.maxExpand(s + 1, p, ep);
        break;
      }
      if (epc === 0x2a) {
        s = this.maxExpand(s, p, ep);
        break;
      }
      if (epc === 0x2d) {
        s = this.minExpand(s, p, ep);
        break;
      }
      s++;
      p = ep;
    }
    this.matchdepth++;
    return s;
  }

  /** classend: the index after the single-character class at `p`. */
  private classEnd(p: number): number {
    const P = this.P;
    const pEnd = this.pEnd;
    const c = P[p++];
    if (c === L_ESC) {
      if (p >= pEnd) throw new PatternError("malformed pattern (ends with '%')");
      return p + 1;
    }
    if (c === 0x5b) {
      const start = p;
      if (p < pEnd && P[p] === 0x5e) p++;
      // look for a ']' (the first character of the set is never its end)
      do {
        if (p >= pEnd) throw new PatternError("malformed pattern (missing ']')");
        if (P[p++] === L_ESC && p < pEnd) p++; // skip escapes (e.g. '%]')
      } while (p >= pEnd || P[p] !== 0x5d);
      if (p - start > 32) this.spend((p - start) >> 4);
      return p + 1;
    }
    return p;
  }

  /** matchbracketclass: `p` at '[', `ec` at the closing ']'. */
  private matchBracketClass(c: number, p: number, ec: number): boolean {
    const P = this.P;
    let sig = true;
    if (ec - p > 32) this.spend((ec - p) >> 4);
    if (P[p + 1] === 0x5e) {
      sig = false;
      p++;
    }
    while (++p < ec) {
      const pc = P[p];
      if (pc === L_ESC) {
        p++;
        if (matchClass(c, P[p])) return sig;
      } else if (P[p + 1] === 0x2d && p + 2 < ec) {
        p += 2;
        if (pc <= c && c <= P[p]) return sig;
      } else if (pc === c) return sig;
    }
    return !sig;
  }

  private singleMatch(s: number, p: number, ep: number): boolean {
    if (s >= this.srcEnd) return false;
    const c = this.S[s];
    const pc = this.P[p];
    switch (pc) {
      case 0x2e:
        return true; // '.'
      case L_ESC:
        return matchClass(c, this.P[p + 1]);
      case 0x5b:
        return this.matchBracketClass(c, p, ep - 1);
      default:
        return pc === c;
    }
  }

  private matchBalance(s: number, p: number): number {
    if (p >= this.pEnd - 1) throw new PatternError("malformed pattern (missing arguments to '%b')");
    const S = this.S;
    const srcEnd = this.srcEnd;
    // At the end of the subject C compares the terminating '\0': it can equal the opening
    // character, but then the scan below finds nothing either.
    if (s >= srcEnd || S[s] !== this.P[p]) return -1;
    const b = this.P[p];
    const e = this.P[p + 1];
    let cont = 1;
    const from = s;
    while (++s < srcEnd) {
      const c = S[s];
      if (c === e) {
        if (--cont === 0) {
          this.spend((s - from) >> 3);
          return s + 1;
        }
      } else if (c === b) cont++;
    }
    this.spend((s - from) >> 3);
    return -1;
  }

  /** The first index from `s` on where the first class of `c` matches (or srcEnd). */
  private skipTo(s: number, c: Compiled): number {
    const at = this.searchRun(c, s, 1);
    return at < 0 ? this.srcEnd : at;
  }

  /** Recently used patterns, compiled (see compiled). */
  private readonly cache: Compiled[] = [];
  private nextEntry = 0;

  /**
   * What the unanchored pattern P[p..pEnd) can be searched by, kept for the next calls: a
   * script matches the same few patterns line after line. `run`: the pattern is a run of `k`
   * single-character classes (a character, '%x' or '[...]', none with a suffix), which match at
   * a position exactly when each class holds the byte there. Otherwise `k` is 1 when the
   * pattern starts with a class that must match (no suffix, or '+'), else 0. The classes'
   * membership tables are kept in JS and, with a native scan, in the heap (`block`). '.'
   * matches anything (a table of ones in a run); a pattern that starts with it gets no skip.
   * Patterns over MAX_COMPILED bytes are not compiled, runs over MAX_RUN classes not searched
   * as runs: what a hostile pattern makes the host hold stays small.
   */
  private compiled(p: number, pEnd: number): Compiled {
    const P = this.P;
    const n = pEnd - p;
    const cache = this.cache;
    outer: for (let i = 0; i < cache.length; i++) {
      const e = cache[i];
      if (e.text.length !== n) continue;
      const t = e.text;
      for (let j = 0; j < n; j++) if (t[j] !== P[p + j]) continue outer;
      return e;
    }
    const classes: number[] = [];
    let run = n > 0;
    let first = false;
    try {
      for (let q = p; q < pEnd; ) {
        const ch = P[q];
        if (!SIMPLE_START[ch] || (ch === L_ESC && q + 1 < pEnd && ESCAPE_ITEM[P[q + 1]])) {
          run = false;
          break;
        }
        const ep = this.classEnd(q);
        const suffix = ep < pEnd ? P[ep] : 0;
        classes.push(q, ep);
        if (q === p) first = ch !== 0x2e && suffix !== 0x2a && suffix !== 0x3f && suffix !== 0x2d;
        if (suffix === 0x2a || suffix === 0x3f || suffix === 0x2d || suffix === 0x2b) {
          run = false;
          break;
        }
        q = ep;
      }
    } catch (err) {
      // Malformed: the match itself raises the error, as Lua does.
      if (!(err instanceof PatternError)) throw err;
      run = false;
      first = false;
    }
    if (classes.length / 2 > MAX_RUN) run = false;
    const k = run ? classes.length / 2 : first ? 1 : 0;
    const tables: Uint8Array[] = [];
    for (let j = 0; j < k; j++) tables.push(this.classTable(classes[2 * j], classes[2 * j + 1]));
    const native = this.native;
    let block = 0;
    if (native !== null && k > 0) {
      const at = native.alloc(RUN_HEADER + 256 * k);
      if (at) {
        block = at + RUN_HEADER;
        native.heap().set(runHeader(tables[0]), at);
        for (let j = 0; j < k; j++) native.heap().set(tables[j], block + 256 * j);
      }
    }
    const entry: Compiled = { text: P.slice(p, pEnd), run, k, tables, block, textPtr: 0 };
    let slot = cache.length;
    if (slot < CACHED_PATTERNS) cache.push(entry);
    else {
      slot = this.nextEntry;
      const old = cache[slot];
      if (native) {
        if (old.block) native.free(old.block - RUN_HEADER);
        if (old.textPtr) native.free(old.textPtr);
      }
      cache[slot] = entry;
      this.nextEntry = (this.nextEntry + 1) % CACHED_PATTERNS;
    }
    this.publish(slot, entry);
    return entry;
  }

  /** Enters a run in the quick path's directory (its slot is the cache's), or clears the slot. */
  private publish(slot: number, entry: Compiled): void {
    const native = this.native;
    if (!this.quickDir || native === null) return;
    const at = this.quickDir + slot * QUICK_DIR.entrySize;
    const text = entry.run && entry.block ? native.alloc(entry.text.length) : 0;
    const h = native.heap();
    const view = new DataView(h.buffer, h.byteOffset);
    if (!text) {
      view.setInt32(at + QUICK_DIR.len, -1, true);
      return;
    }
    h.set(entry.text, text);
    entry.textPtr = text;
    view.setInt32(at + QUICK_DIR.text, text, true);
    view.setInt32(at + QUICK_DIR.block, entry.block, true);
    view.setInt32(at + QUICK_DIR.k, entry.k, true);
    view.setInt32(at + QUICK_DIR.len, entry.text.length, true);
  }

  /** The membership table of the single-character class at p..ep. */
  private classTable(p: number, ep: number): Uint8Array {
    const P = this.P;
    const pc = P[p];
    const table = new Uint8Array(256);
    for (let c = 0; c < 256; c++) {
      const member = pc === 0x2e || (pc === L_ESC ? matchClass(c, P[p + 1]) : pc === 0x5b ? this.matchBracketClass(c, p, ep - 1) : c === pc);
      table[c] = member ? 1 : 0;
    }
    return table;
  }

  /** How many characters from `s` on the single-character class at p..ep matches. */
  private countRun(s: number, p: number, ep: number): number {
    const S = this.S;
    const srcEnd = this.srcEnd;
    const pc = this.P[p];
    let i = s;
    if (pc === 0x2e) i = srcEnd;
    else if (pc === L_ESC) {
      const cl = this.P[p + 1];
      const bit = CLASS_BIT[cl];
      if (bit === 0) while (i < srcEnd && S[i] === cl) i++;
      else if (cl >= 0x61) while (i < srcEnd && (CTYPE[S[i]] & bit) !== 0) i++;
      else while (i < srcEnd && (CTYPE[S[i]] & bit) === 0) i++;
    } else if (pc === 0x5b) {
      while (i < srcEnd && this.matchBracketClass(S[i], p, ep - 1)) i++;
    } else while (i < srcEnd && S[i] === pc) i++;
    return i - s;
  }

  private maxExpand(s: number, p: number, ep: number): number {
    // s <= srcEnd always: a match never gets past the end of the subject.
    let i = this.countRun(s, p, ep);
    this.spend(i >> 3);
    // try with the most repetitions first, then one fewer each time
    while (i >= 0) {
      const res = this.match(s + i, ep + 1);
      if (res !== -1) return res;
      i--;
    }
    return -1;
  }

  private minExpand(s: number, p: number, ep: number): number {
    for (;;) {
      const res = this.match(s, ep + 1);
      if (res !== -1) return res;
      if (this.singleMatch(s, p, ep)) s++;
      else return -1;
    }
  }

  private startCapture(s: number, p: number, what: number): number {
    const level = this.level;
    if (level >= LUA_MAXCAPTURES) throw new PatternError('too many captures');
    this.capInit[level] = s;
    this.capLen[level] = what;
    this.level = level + 1;
    const res = this.match(s, p);
    if (res === -1) this.level--;
    return res;
  }

  private endCapture(s: number, p: number): number {
    const l = this.captureToClose();
    this.capLen[l] = s - this.capInit[l];
    const res = this.match(s, p);
    if (res === -1) this.capLen[l] = CAP_UNFINISHED;
    return res;
  }

  private captureToClose(): number {
    for (let level = this.level - 1; level >= 0; level--) if (this.capLen[level] === CAP_UNFINISHED) return level;
    throw new PatternError('invalid pattern capture');
  }

  private checkCapture(l: number): number {
    l -= 0x31; // '1'
    if (l < 0 || l >= this.level || this.capLen[l] === CAP_UNFINISHED) throw new PatternError(`invalid capture index %${l + 1}`);
    return l;
  }

  private matchCapture(s: number, ch: number): number {
    const l = this.checkCapture(ch);
    const len = this.capLen[l];
    // A position capture has a "length" of (size_t)-2 in C: it never fits.
    if (len < 0 || this.srcEnd - s < len) return -1;
    const S = this.S;
    const init = this.capInit[l];
    for (let i = 0; i < len; i++) if (S[init + i] !== S[s + i]) return -1;
    if (len > 32) this.spend(len >> 4);
    return s + len;
  }
}

/** A capture: the bytes, or a 1-based position for `()`. */
export type Capture = Buffer | number;

export interface PatternMatch {
  /** 0-based start, inclusive. */
  start: number;
  /** 0-based end, exclusive (= Lua's 1-based inclusive end). */
  end: number;
  /** The pattern's captures (none when it has none; Lua's `match` then returns the whole match). */
  captures: Capture[];
}

export interface FindOptions {
  /** A leading '^' anchors the match (default true; gmatch takes it literally). */
  anchor?: boolean;
  /** gsub/gmatch: the end of the previous match, where an empty match is skipped. */
  lastMatch?: number;
}

/**
 * One search as string.find does it (without its plain-text shortcut): the first match of
 * `pattern` in `subject` at or after the 0-based `init`, or null. Throws PatternError for a
 * malformed pattern (and for an unfinished capture in a match, as Lua's find does), and
 * whatever `check` throws to stop it.
 */
export function patternFind(subject: Uint8Array, pattern: Uint8Array, init: number, options: FindOptions = {}, check: BudgetCheck | null = null): PatternMatch | null {
  const m = new PatternMatcher(check);
  const start = m.find(subject, 0, subject.length, init, pattern, 0, pattern.length, options.anchor ?? true, options.lastMatch ?? -1);
  if (start < 0) return null;
  const captures: Capture[] = [];
  for (let i = 0; i < m.level; i++) {
    const len = m.capLen[i];
    if (len === CAP_UNFINISHED) throw new PatternError('unfinished capture');
    const at = m.capInit[i];
    captures.push(len === CAP_POSITION ? at + 1 : Buffer.from(subject.subarray(at, at + len)));
  }
  return { start, end: m.end, captures };
}

/** Plain substring search (string.find with `plain`, or a pattern without specials): 0-based index or -1. */
export function plainFind(subject: Uint8Array, pattern: Uint8Array, init: number): number {
  if (pattern.length === 0) return init <= subject.length ? init : -1;
  if (pattern.length > subject.length - init) return -1;
  const hay = Buffer.isBuffer(subject) ? subject : Buffer.from(subject.buffer, subject.byteOffset, subject.length);
  return hay.indexOf(pattern, init);
}
