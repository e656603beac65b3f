/**
 * Which globals a compiled script names, read from its Lua 5.4 bytecode (the format of
 * ldump.c): the keys of every GETTABUP and SETTABUP on _ENV, in every function of the chunk.
 * The session host uses it to leave out what a script cannot see or change: a global the
 * script never names is not pushed before each callback, and when it writes none of the
 * globals the host reads back, the readback is skipped (smtpsvr-hooks.ts).
 *
 * That holds only while every global access names its key in the code. The script is
 * `dynamic` (and gets no such savings) when it can reach the globals table as a value or
 * run code this analysis has not seen: _ENV used other than to index it by a constant name
 * (`local e = _ENV`, `_ENV = t`, a long name the compiler indexes at run time), or a
 * reference to _G, load, loadstring, require, dofile and the like.
 */

/** Globals that hand a script the globals table or code compiled at run time. */
const DYNAMIC_NAMES = new Set(['_G', 'load', 'loadstring', 'loadfile', 'dofile', 'require', 'module', 'getfenv', 'setfenv', 'debug', 'package', '__moonpost_source']);

export interface GlobalUse {
  /** Names indexed on _ENV, read or written. */
  named: ReadonlySet<string>;
  /** Names assigned on _ENV. */
  written: ReadonlySet<string>;
  /** The script may reach globals by means other than a constant name (see above). */
  dynamic: boolean;
}

const OP_GETUPVAL = 9;
const OP_SETUPVAL = 10;
const OP_GETTABUP = 11;
const OP_SETTABUP = 15;

/** Constant tags of a 5.4 dump (lobject.h variants). */
const T_NIL = 0;
const T_FALSE = 1;
const T_TRUE = 17;
const T_INT = 3;
const T_FLOAT = 19;
const T_SHORTSTR = 4;
const T_LONGSTR = 20;

class Reader {
  pos = 0;
  constructor(private readonly b: Buffer) {}

  byte(): number {
    if (this.pos >= this.b.length) throw new Error('truncated chunk');
    return this.b[this.pos++];
  }

  /** ldump.c dumpSize: 7 bits a byte, most significant first, the last byte marked by 0x80. */
  size(): number {
    let n = 0;
    for (;;) {
      const b = this.byte();
      n = n * 128 + (b & 0x7f);
      if (n > 0x7fffffff) throw new Error('size out of range');
      if (b & 0x80) return n;
    }
  }

  bytes(n: number): Buffer {
    if (this.pos + n > this.b.length) throw new Error('truncated chunk');
    const s = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return s;
  }

  string(): string | null {
    const n = this.size();
    return n === 0 ? null : this.bytes(n - 1).toString('latin1');
  }
}

const HEADER = Buffer.from('\x1bLua\x54\x00\x19\x93\r\n\x1a\n', 'latin1');

interface Proto {
  code: Buffer;
  /** Constants: strings as they are, other values as null. */
  k: (string | null)[];
  /** Upvalue descriptors: whether it captures an enclosing register (else an upvalue), and which. */
  upvalues: { instack: boolean; idx: number }[];
  protos: Proto[];
}

/** One function of the dump (ldump.c dumpFunction), its nested functions included. */
function readFunction(r: Reader): Proto {
  r.string(); // source
  r.size(); // linedefined
  r.size(); // lastlinedefined
  r.bytes(3); // numparams, is_vararg, maxstacksize
  const code = r.bytes(r.size() * 4);
  const k: (string | null)[] = [];
  for (let i = r.size(); i > 0; i--) {
    const tag = r.byte();
    if (tag === T_SHORTSTR || tag === T_LONGSTR) k.push(r.string());
    else if (tag === T_INT || tag === T_FLOAT) {
      r.bytes(8);
      k.push(null);
    } else if (tag === T_NIL || tag === T_FALSE || tag === T_TRUE) k.push(null);
    else throw new Error(`unknown constant tag ${tag}`);
  }
  const upvalues: Proto['upvalues'] = [];
  for (let i = r.size(); i > 0; i--) {
    const instack = r.byte() !== 0;
    const idx = r.byte();
    r.byte(); // kind
    upvalues.push({ instack, idx });
  }
  const protos: Proto[] = [];
  for (let i = r.size(); i > 0; i--) protos.push(readFunction(r));
  // Debug information: line info, absolute line info, local names, upvalue names.
  r.bytes(r.size());
  for (let i = r.size(); i > 0; i--) {
    r.size();
    r.size();
  }
  for (let i = r.size(); i > 0; i--) {
    r.string();
    r.size();
    r.size();
  }
  for (let i = r.size(); i > 0; i--) r.string();
  return { code, k, upvalues, protos };
}

/** The analysis of `bytecode` (a dump with or without debug info), or null when it cannot be read. */
export function globalUse(bytecode: Buffer): GlobalUse | null {
  const named = new Set<string>();
  const written = new Set<string>();
  let dynamic = false;

  // `env`: which upvalues of f are the globals table.
  const scan = (f: Proto, env: ReadonlySet<number>): void => {
    for (let pc = 0; pc < f.code.length; pc += 4) {
      const ins = f.code.readUInt32LE(pc);
      const op = ins & 0x7f;
      const a = (ins >>> 7) & 0xff;
      const b = (ins >>> 16) & 0xff;
      const c = ins >>> 24;
      if ((op === OP_GETUPVAL || op === OP_SETUPVAL) && env.has(b)) dynamic = true;
      else if (op === OP_GETTABUP || op === OP_SETTABUP) {
        if (!env.has(op === OP_GETTABUP ? b : a)) continue;
        const key = f.k[op === OP_GETTABUP ? c : b];
        if (typeof key !== 'string') {
          dynamic = true;
          continue;
        }
        named.add(key);
        if (op === OP_SETTABUP) written.add(key);
        if (DYNAMIC_NAMES.has(key)) dynamic = true;
      }
    }
    // A nested function's upvalue is _ENV when it captures an _ENV upvalue of f; one captured
    // from a register is a local (`local _ENV = t`), not the globals table.
    for (const child of f.protos) {
      const childEnv = new Set<number>();
      child.upvalues.forEach((u, j) => {
        if (!u.instack && env.has(u.idx)) childEnv.add(j);
      });
      scan(child, childEnv);
    }
  };

  try {
    const r = new Reader(bytecode);
    if (!r.bytes(HEADER.length).equals(HEADER)) return null;
    // Instruction, integer and float sizes, then a test integer and a test float.
    if (r.byte() !== 4 || r.byte() !== 8 || r.byte() !== 8) return null;
    r.bytes(16);
    r.byte(); // the main function's number of upvalues
    const main = readFunction(r);
    if (r.pos !== bytecode.length) return null;
    // The main function's only upvalue is _ENV.
    scan(main, new Set([0]));
  } catch {
    return null;
  }
  return { named, written, dynamic };
}
