/**
 * The VPOP3 helper functions, in the `VPOP3` table of every script state (README, "VPOP3
 * helper functions"):
 * - inside ProcessMessage only, over the message being processed: GetMessageLines,
 *   MessageReset, GetMessagePart, GetMessagePartHeader, GetMessagePartBody;
 * - anywhere: HexString, UnHexString, MD5, SHA1, SHA256, HMAC.
 *
 * Strings cross byte for byte (arguments are read from the Lua stack as bytes, results are
 * pushed as Buffers). Digests come back as byte tables (Lua arrays of numbers 0-255), which
 * HexString and every function taking bytes accept as well as strings.
 *
 * The session tells the library which message is being processed:
 *
 *   const lib = installVpop3Library(state, { maxBytes });
 *   lib.setMessage({ path, size, structure });   // just before ProcessMessage
 *   try { ...call ProcessMessage... } finally { lib.setMessage(null); }
 *
 * (or ScriptHooks.setMessageContext, which finds the library of its state).
 */
import { createHash, createHmac } from 'node:crypto';
import type { MimePart } from '../message/types.js';
import type { HostFunction, LuaState, LuaValue } from './lua-state.js';
import { T_NUMBER, T_STRING, T_TABLE } from './lua-vm.js';
import { MessageFile, type MessageContext } from './vpop3-message.js';

export type { MessageContext } from './vpop3-message.js';

/** The size cap when none is given: no helper returns (or reads) more bytes than this at once. */
export const DEFAULT_MAX_BYTES = 8 * 1024 * 1024;
/** Most lines one GetMessageLines call returns, whatever it asks for. */
export const MAX_LINES_PER_CALL = 10000;

export interface Vpop3Options {
  /** Most bytes a message helper returns from one call (a part, a decoded body, lines). */
  maxBytes?: number;
}

/** The library installed in one state: the message context and the line cursor live here. */
export class Vpop3Library {
  private file: MessageFile | null = null;

  constructor(readonly maxBytes: number) {}

  /**
   * Makes `ctx` the message being processed (the line cursor starts at its first line), or
   * with null ends that: the message helpers then raise a Lua error.
   */
  setMessage(ctx: MessageContext | null): void {
    this.file = ctx ? new MessageFile(ctx, this.maxBytes) : null;
  }

  get message(): MessageContext | null {
    return this.file?.ctx ?? null;
  }

  /** The message for a helper call, or the error outside ProcessMessage. */
  current(name: string): MessageFile {
    if (!this.file) throw new Error(`${name} is only available inside ProcessMessage`);
    return this.file;
  }
}

const libraries = new WeakMap<LuaState, Vpop3Library>();

/** The library installed in `state`, if any. */
export function vpop3Library(state: LuaState): Vpop3Library | undefined {
  return libraries.get(state);
}

const TYPE_NAMES = ['nil', 'boolean', 'userdata', 'number', 'string', 'table', 'function', 'userdata', 'thread'];

/**
 * The arguments of one host call. A host function runs while its arguments are still on the
 * Lua stack of the calling thread (`state.cur`), where strings are read as bytes and byte
 * tables entry by entry; the JS values the dispatcher decoded serve when they are not.
 */
class Args {
  private readonly L: number;

  constructor(
    private readonly state: LuaState,
    private readonly values: LuaValue[],
    private readonly fname: string,
  ) {
    const L = state.cur;
    this.L = L && state.vm.m._lua_gettop(L) === values.length ? L : 0;
  }

  private type(i: number): number {
    if (i >= this.values.length) return -1;
    if (this.L) return this.state.vm.m._lua_type(this.L, i + 1) as number;
    const v = this.values[i];
    if (v === null) return 0;
    if (typeof v === 'boolean') return 1;
    if (typeof v === 'number') return T_NUMBER;
    if (typeof v === 'string' || Buffer.isBuffer(v)) return T_STRING;
    return T_TABLE;
  }

  bad(i: number, expected: string): Error {
    const t = this.type(i);
    return new Error(`bad argument #${i + 1} to '${this.fname}' (${expected} expected, got ${t < 0 ? 'no value' : TYPE_NAMES[t]})`);
  }

  /** A string (or number, as Lua would convert it) as its bytes. */
  string(i: number, expected = 'string'): Buffer {
    const t = this.type(i);
    if (t !== T_STRING && t !== T_NUMBER) throw this.bad(i, expected);
    if (this.L) {
      // lua_tolstring turns a number argument into its string in place, as Lua's own would.
      const b = this.state.vm.toBytes(this.L, i + 1);
      if (b) return b;
    }
    const v = this.values[i];
    return Buffer.isBuffer(v) ? v : Buffer.from(String(v), 'utf8');
  }

  /** A string, or a byte table (array of integers 0-255; {} is no bytes). */
  bytes(i: number): Buffer {
    const t = this.type(i);
    if (t !== T_TABLE) return this.string(i, 'string or byte table');
    if (this.L) return this.byteTableOnStack(i);
    const v = this.values[i];
    const arr = Array.isArray(v) ? v : [];
    const out = Buffer.alloc(arr.length);
    arr.forEach((x, k) => {
      if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x > 255) throw this.badEntry(i, k + 1);
      out[k] = x;
    });
    return out;
  }

  private badEntry(i: number, k: number): Error {
    return new Error(`bad argument #${i + 1} to '${this.fname}' (byte table entry ${k} is not a number from 0 to 255)`);
  }

  private byteTableOnStack(i: number): Buffer {
    const m = this.state.vm.m;
    const L = this.L;
    const len = Number(m._lua_rawlen(L, i + 1));
    const out = Buffer.alloc(len);
    for (let k = 1; k <= len; k++) {
      const t: number = m._lua_rawgeti(L, i + 1, BigInt(k));
      const v: number = t === T_NUMBER ? m._lua_tonumberx(L, -1, 0) : NaN;
      m._lua_settop(L, -2);
      if (!Number.isInteger(v) || v < 0 || v > 255) throw this.badEntry(i, k);
      out[k - 1] = v;
    }
    return out;
  }

  /** An IMAP section path: a string, or a number such as 2 for "2". */
  path(i: number): string {
    return this.string(i).toString('latin1');
  }

  /** An optional whole number (nil gives `def`). */
  optInteger(i: number, def: number): number {
    const t = this.type(i);
    if (t <= 0) return def;
    const v = this.values[i];
    if (typeof v !== 'number' || !Number.isInteger(v)) throw this.bad(i, 'integer');
    return v;
  }
}

const toByteTable = (b: Buffer): number[] => Array.from(b);

const HMAC_ALGORITHMS: Record<string, string> = { SHA1: 'sha1', SHA256: 'sha256' };

/**
 * Defines the VPOP3 helpers in `state` (a `VPOP3` table) and returns the handle through which
 * the session sets the message being processed. Until it does, the message helpers raise
 * "VPOP3.X is only available inside ProcessMessage".
 */
export function installVpop3Library(state: LuaState, options: Vpop3Options = {}): Vpop3Library {
  const maxBytes = options.maxBytes !== undefined && options.maxBytes > 0 ? Math.floor(options.maxBytes) : DEFAULT_MAX_BYTES;
  const lib = new Vpop3Library(maxBytes);
  libraries.set(state, lib);
  const fns: [string, HostFunction][] = [];
  const def = (name: string, fn: (a: Args, fname: string) => LuaValue[]): void => {
    const fname = `VPOP3.${name}`;
    fns.push([name, (s, values) => fn(new Args(s, values, fname), fname)]);
  };

  // ---- The message being processed (ProcessMessage only) ----

  def('GetMessageLines', (a, fname) => {
    const n = a.optInteger(0, 1);
    const file = lib.current(fname);
    if (n < 1) throw new Error(`bad argument #1 to '${fname}' (number of lines must be at least 1)`);
    return [file.lines(Math.min(n, MAX_LINES_PER_CALL), fname)];
  });
  def('MessageReset', (_a, fname) => {
    lib.current(fname).cursor = 0;
    return [];
  });
  const partFn = (name: string, get: (file: MessageFile, p: MimePart, fname: string) => Buffer): void =>
    def(name, (a, fname) => {
      const path = a.path(0);
      const file = lib.current(fname);
      const p = file.part(path);
      return p ? [get(file, p, fname)] : [null];
    });
  partFn('GetMessagePart', (f, p, n) => f.raw(p, n));
  partFn('GetMessagePartHeader', (f, p, n) => f.header(p, n));
  partFn('GetMessagePartBody', (f, p, n) => f.body(p, n));

  // ---- Bytes, hashes, HMAC (any script, any callback) ----

  def('HexString', (a) => [a.bytes(0).toString('hex')]);
  def('UnHexString', (a) => {
    const hex = a.string(0).toString('latin1');
    if (hex.length % 2 !== 0 || !/^[0-9A-Fa-f]*$/.test(hex)) return [null];
    return [Buffer.from(hex, 'hex')];
  });
  for (const [name, alg] of [
    ['MD5', 'md5'],
    ['SHA1', 'sha1'],
    ['SHA256', 'sha256'],
  ]) {
    def(name, (a) => [toByteTable(createHash(alg).update(a.bytes(0)).digest())]);
  }
  def('HMAC', (a, fname) => {
    const algName = a.string(0).toString('latin1');
    const alg = HMAC_ALGORITHMS[algName.toUpperCase()];
    if (!alg) throw new Error(`bad argument #1 to '${fname}' (unknown algorithm "${algName.slice(0, 40)}": use "SHA1" or "SHA256")`);
    const text = a.bytes(1);
    const key = a.bytes(2);
    return [toByteTable(createHmac(alg, key).update(text).digest())];
  });
  state.defineTable('VPOP3', fns);
  return lib;
}
