import { LuaWasm } from 'wasmoon';
import type { LuaState, LuaValue } from './lua-state.js';
import { UD, stateAllocator, type StateAllocator } from './state-allocator.js';
import { patchCountHook } from './count-hook-patch.js';
import { STAGE, lineTableFunction } from './line-table.js';
import { CAP_POSITION, CAP_UNFINISHED, PatternMatcher, noSpecials } from './lua-pattern.js';
import { classScan, type NativeScan } from './class-scan.js';
import { quickFind } from './quick-find.js';

/** The raw Emscripten module of wasmoon: Lua 5.4's C API as exported wasm functions. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type LuaModule = any;

export const LUA_OK = 0;
export const LUA_YIELD = 1;
export const LUA_ERRRUN = 2;
export const LUA_ERRSYNTAX = 3;
export const LUA_ERRMEM = 4;
export const LUA_ERRERR = 5;
export const LUA_MULTRET = -1;
export const LUA_REGISTRYINDEX = -1000000 - 1000;
/** The registry slot of the globals table (Lua 5.4 lua.h). */
export const LUA_RIDX_GLOBALS = 2;
export const LUA_MASKCOUNT = 1 << 3;
const LUA_MASKCALL = 1 << 0;
const LUA_HOOKCOUNT = 3;

export const T_NIL = 0;
export const T_BOOLEAN = 1;
export const T_NUMBER = 3;
export const T_STRING = 4;
export const T_TABLE = 5;
export const T_FUNCTION = 6;

/** Why a call was stopped by the host rather than by the script's own error. */
export type Stop = 'timeout' | 'instructions' | 'memory';

/** A state's region and user data as they were (LuaVm.snapshot). */
export interface StateSnapshot {
  region: Uint8Array;
  ud: Uint8Array;
}

/**
 * Accounting of one Lua state. The memory part lives in the wasm heap, in the state's allocator
 * user data at `ptr` (UD of state-allocator.ts: bytes used, the cap, whether the cap binds now,
 * whether it was hit), where the allocator keeps it up to date without leaving wasm.
 */
export class StateBudget {
  private stop: Stop | null = null;
  closed = false;
  deadline = Infinity;
  instructions = 0;
  maxInstructions = Infinity;

  constructor(
    private readonly m: LuaModule,
    readonly ptr: number,
    readonly memoryLimit: number,
  ) {
    m.HEAPU8.fill(0, ptr, ptr + UD.size);
    // An int32 cap: 2 GB is more than a wasm32 heap gives anyway.
    m.HEAP32[(ptr + UD.cap) >> 2] = Math.min(memoryLimit, 0x7fffffff);
  }

  get memoryUsed(): number {
    return this.m.HEAP32[(this.ptr + UD.used) >> 2];
  }

  /** Set when the host stopped the running call; every further instruction raises again. */
  get stopped(): Stop | null {
    if (this.stop) return this.stop;
    return !this.closed && this.m.HEAP32[(this.ptr + UD.hit) >> 2] ? 'memory' : null;
  }

  set stopped(v: Stop | null) {
    this.stop = v;
  }

  /**
   * The cap binds the script's own calls only. The host's pushes of globals and arguments
   * (bounded by the SMTP limits) run unprotected, where a failed allocation would abort the
   * whole VM instead of raising a catchable error.
   */
  enforce(on: boolean): void {
    if (!this.closed) this.m.HEAP32[(this.ptr + UD.enforce) >> 2] = on ? 1 : 0;
  }
}

const HOOK_EVERY = 1000;

/**
 * wasmoon's build wraps every wasm export in a closure asserting that the runtime is ready,
 * which builds a template string and calls through `apply`: some 40 ns a call, more than Lua's
 * own matching of a short anchored pattern. The raw exports are caught as wasmoon instantiates
 * its module (WebAssembly.instantiate, wrapped only while an initialization is under way) and
 * used for every call from the host (LuaVm.m). Without them (another loader), the wrapped
 * functions serve.
 */
let initializing = 0;
/** Whether the module loaded last has the count-hook patch (count-hook-patch.ts). */
let cheapCountHook = false;
export const countHookPatched = (): boolean => cheapCountHook;
let realInstantiate: typeof WebAssembly.instantiate | null = null;
const caughtExports: WebAssembly.Exports[] = [];

async function initializeWithExports(): Promise<{ module: LuaModule; exports: WebAssembly.Exports | null }> {
  if (initializing++ === 0) {
    const real = WebAssembly.instantiate;
    realInstantiate = real;
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    (WebAssembly as any).instantiate = async function (this: unknown, ...args: unknown[]): Promise<unknown> {
      const fast = fastInvoke(args[1]);
      // The module's bytes get the count-hook patch (count-hook-patch.ts); a module that is
      // not the known build, or a patch that fails, loads as it is.
      if (ArrayBuffer.isView(args[0]) || args[0] instanceof ArrayBuffer) {
        const bytes = ArrayBuffer.isView(args[0]) ? new Uint8Array(args[0].buffer, args[0].byteOffset, args[0].byteLength) : new Uint8Array(args[0]);
        let patched: Uint8Array | null = null;
        try {
          patched = patchCountHook(bytes);
        } catch {
          patched = null;
        }
        if (patched) args[0] = patched;
        cheapCountHook = patched !== null;
      }
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      const r = await (real as any).apply(this, args);
      const instance = r instanceof WebAssembly.Instance ? r : r?.instance;
      if (instance instanceof WebAssembly.Instance) {
        caughtExports.push(instance.exports);
        fast?.bind(instance.exports);
      }
      return r;
    };
  }
  let lw: LuaWasm;
  try {
    lw = await LuaWasm.initialize();
  } finally {
    if (--initializing === 0) WebAssembly.instantiate = realInstantiate!;
  }
  // The instance whose memory is this module's heap.
  const heap = lw.module.HEAPU8.buffer;
  const i = caughtExports.findIndex((e) => e.memory instanceof WebAssembly.Memory && e.memory.buffer === heap);
  const exports = i >= 0 ? caughtExports.splice(i, 1)[0] : null;
  if (initializing === 0) caughtExports.length = 0;
  return { module: lw.module, exports };
}

/**
 * Every protected call (lua_pcall, pcall in a script, loading a chunk, resuming a coroutine)
 * runs through the module's `invoke_vii` import, Emscripten's setjmp: it saves the stack
 * pointer through an assertion wrapper (a template string built per call) and checks the
 * function table mirror. This is the same function over the raw exports, swapped into the
 * imports before instantiation; it falls back to the original until the instance exists.
 */
function fastInvoke(imports: unknown): { bind(exports: WebAssembly.Exports): void } | null {
  const env = (imports as { env?: Record<string, unknown> } | undefined)?.env;
  const original = env?.invoke_vii;
  if (!env || typeof original !== 'function') return null;
  let ex: { stackSave(): number; stackRestore(sp: number): void; setThrew(a: number, b: number): void; table: WebAssembly.Table } | null = null;
  env.invoke_vii = function (index: number, a1: number, a2: number): void {
    if (!ex) return (original as (i: number, a: number, b: number) => void)(index, a1, a2);
    const sp = ex.stackSave();
    try {
      ex.table.get(index)(a1, a2);
    } catch (e) {
      ex.stackRestore(sp);
      // A longjmp is thrown as a number; anything else is a real exception.
      if (e !== (e as number) + 0) throw e;
      ex.setThrew(1, 0);
    }
  };
  return {
    bind(exports) {
      const { stackSave, stackRestore, setThrew, __indirect_function_table: table } = exports as Record<string, unknown>;
      if (typeof stackSave === 'function' && typeof stackRestore === 'function' && typeof setThrew === 'function' && table instanceof WebAssembly.Table) {
        ex = { stackSave, stackRestore, setThrew, table } as typeof ex;
      }
    },
  };
}

/** Buffer's search (linear time), on views of the wasm heap. */
const indexOf = Buffer.prototype.indexOf as (this: Uint8Array, value: Uint8Array, byteOffset: number) => number;

/** Thrown inside the pattern matcher when the budget says stop. */
class BudgetStop extends Error {}

/** Registry keys of the pattern functions for the sandbox prelude (lua-pattern.ts, sandbox.ts). */
export const PATTERNS_KEY = 'moonpost.patterns';
/** Registry key of the line-table function, which the prelude hands to the host's helpers. */
export const LINES_KEY = 'moonpost.lines';
export const GMATCH_KEY = 'moonpost.gmatch';
export const GSUB_KEY = 'moonpost.gsub';

/** posrelatI of lstrlib.c: a 1-based start position, negative from the end, clipped to 1. */
function posrelatI(pos: bigint, len: number): number {
  if (pos > 0n) return pos > BigInt(len) + 1n ? len + 2 : Number(pos);
  if (pos === 0n) return 1;
  if (pos < -BigInt(len)) return 1;
  return len + Number(pos) + 1;
}

/**
 * One WebAssembly instance of Lua. It owns the shared allocator (with a per-state memory cap)
 * and the shared count hook (with per-call deadlines), because wasm function-table slots are
 * scarce and a JS call per state would be wasted. Only one state runs at a time (JS is single
 * threaded), so the hook charges whichever state is `running`.
 */
export class LuaVm {
  /**
   * The module, with its C API functions and malloc/realloc/free replaced by the raw wasm
   * exports when they were caught: every call from the host goes straight into wasm.
   */
  readonly m: LuaModule;
  private readonly api: LuaModule;
  readonly allocFn: number;
  private readonly budgetOf = new Map<number, StateBudget>();
  /** The per-state arenas in wasm (state-allocator.ts); null when the module's exports were not caught. */
  readonly arena: StateAllocator | null;
  /** Whether allocations are accounted inside wasm rather than in JS. */
  get nativeAllocator(): boolean {
    return this.arena !== null;
  }
  readonly hookFn: number;
  private runningBudget: StateBudget | null = null;
  /** The budget inside a call right now: its memory cap binds while it is. */
  get running(): StateBudget | null {
    return this.runningBudget;
  }

  set running(b: StateBudget | null) {
    if (b === this.runningBudget) return;
    this.runningBudget?.enforce(false);
    this.runningBudget = b;
    b?.enforce(true);
  }

  /** The state inside a call right now. */
  runningState: LuaState | null = null;
  private readonly byL = new Map<number, LuaState>();
  readonly hostFn: number;
  statesCreated = 0;
  statesOpen = 0;
  private scratch = 0;
  private scratchSize = 0;
  /** The staging area of line blocks (line-table.ts): its descriptor, buffer and size. */
  private readonly stage: number;
  private stageBuf = 0;
  private stageSize = 0;
  /** The C function making a table of the staged lines, for the host's line helper. */
  private readonly linesFn: number;
  private readonly lenPtr: number;
  /** Whether string.find and string.match answer their usual calls in wasm (quick-find.ts). */
  readonly quickFind: boolean;
  /** The C functions behind string.find/match/gmatch/gsub (see installPatterns). */
  private readonly patternFns: Record<string, number>;
  private readonly matcher: PatternMatcher;

  private constructor(
    module: LuaModule,
    /** The module instance's own exports, when they were caught (see initializeWithExports). */
    readonly rawExports: WebAssembly.Exports | null,
  ) {
    const exports = rawExports;
    // The C API and malloc/realloc/free without wasmoon's assertion wrappers (every host call
    // into Lua and every allocation of every state goes through them).
    // Made in one go (fromEntries): adding 150 keys one by one leaves V8 a dictionary-mode
    // object, and every `m._lua_...` and `m.HEAPU8` below a hash lookup (V8's LoadIC went from
    // 7.3% to 2.6% of a profile of 1 MB messages under the all-hooks script).
    const raw = exports ? Object.entries(exports).filter(([name, f]) => typeof f === 'function' && (name.startsWith('lua') || name === 'malloc' || name === 'realloc' || name === 'free') && typeof module[`_${name}`] === 'function') : [];
    const api = Object.setPrototypeOf(Object.fromEntries(raw.map(([name, f]) => [`_${name}`, f])), module) as LuaModule;
    this.m = api;
    this.api = api;
    const m = api;
    this.lenPtr = m._malloc(8);
    this.arena = stateAllocator(exports);
    // The same accounting in JS over the module's allocator, should the wasm one be unavailable.
    this.allocFn = m.addFunction(
      this.arena?.alloc ??
        ((ud: number, ptr: number, osize: number, nsize: number): number => {
          const h: Int32Array = m.HEAP32;
          const u = ud >> 2;
          if (nsize === 0) {
            if (ptr) {
              h[u] -= osize;
              api._free(ptr);
            }
            return 0;
          }
          const delta = ptr ? nsize - osize : nsize;
          if (h[u + 2] && delta > 0 && h[u] + delta > h[u + 1]) {
            h[u + 3] = 1;
            return 0;
          }
          const p = api._realloc(ptr, nsize);
          if (p) m.HEAP32[u] += delta;
          return p;
        }),
      'iiiii',
    );
    this.hookFn = m.addFunction((L: number, ar: number): void => {
      if (this.watch && m.HEAP32[ar >> 2] !== LUA_HOOKCOUNT) return this.noticeCall(L, ar);
      const b = this.running;
      if (!b) return;
      if (this.overBudget(b, HOOK_EVERY)) this.raiseStop(L, b);
    }, 'vii');
    this.hostFn = m.addFunction((L: number): number => this.dispatch(L), 'ii');
    const fn = (f: (L: number) => number): number => m.addFunction(f, 'ii');
    // The matcher searches subjects in the heap in wasm, with its class tables kept there.
    const run = classScan(exports?.memory);
    const native: NativeScan | null = run ? { heap: () => m.HEAPU8, alloc: (n) => m._malloc(n) as number, free: (p) => m._free(p), run } : null;
    this.matcher = new PatternMatcher((steps) => this.chargeSteps(steps), undefined, native);
    this.stage = m._malloc(STAGE.size);
    this.linesFn = fn(lineTableFunction(exports, api, this.stage));
    // find and match in wasm where the call is the usual one (quick-find.ts); it charges Lua's
    // own count, so only over the patched build.
    const quick = (find: boolean): { f: (L: number) => number; wasm: boolean } => {
      const slow = (L: number): number => this.strFind(L, find);
      const dir = this.matcher.quickDir;
      const q = run && dir && cheapCountHook ? quickFind(exports, run, dir, find, slow) : null;
      return { f: q ?? slow, wasm: q !== null };
    };
    const [find, match] = [quick(true), quick(false)];
    this.quickFind = find.wasm && match.wasm;
    this.patternFns = {
      find: fn(find.f),
      match: fn(match.f),
      gmatch: fn((L) => this.strGmatch(L)),
      gsub: fn((L) => this.strGsub(L)),
      gmatch_step: fn((L) => this.gmatchStep(L)),
      gsub_step: fn((L) => this.gsubStep(L)),
    };
  }

  /** Charges `n` instructions; true when the budget is now (or was already) stopped. */
  private overBudget(b: StateBudget, n: number): boolean {
    b.instructions += n;
    if (!b.stopped) {
      if (b.instructions > b.maxInstructions) b.stopped = 'instructions';
      else if (performance.now() > b.deadline) b.stopped = 'timeout';
    }
    return b.stopped !== null;
  }

  /** Raises the stop of `b` in `L`; from now on every instruction raises it again. */
  private raiseStop(L: number, b: StateBudget): never {
    // Every instruction raises, so a pcall loop cannot swallow the stop.
    this.api._lua_sethook(L, this.hookFn, LUA_MASKCOUNT, 1);
    this.pushString(L, `script stopped: ${b.stopped} budget exceeded`);
    return this.api._lua_error(L) as never;
  }

  /**
   * While set, calls of the functions in the registry table `set` (as keys) of the state `L`,
   * its coroutines included, are noticed (`seen`): the functions whose results a snapshot of
   * the state would fix for good. Only that state runs while it is set.
   */
  watch: { L: number; set: number; seen: boolean } | null = null;

  private noticeCall(L: number, ar: number): void {
    const w = this.watch!;
    if (w.seen) return;
    const m = this.api;
    m._lua_getinfo(L, this.cstr('f'), ar);
    m._lua_rawgeti(L, LUA_REGISTRYINDEX, BigInt(w.set));
    m._lua_rotate(L, -2, 1);
    if (m._lua_rawget(L, -2) !== T_NIL) w.seen = true;
    m._lua_settop(L, -3);
  }

  /** The pattern matcher's budget check: one step counts as one instruction. */
  private chargeSteps(steps: number): void {
    const b = this.running;
    if (b && this.overBudget(b, steps)) throw new BudgetStop();
  }

  /**
   * The one C function behind every host function: its upvalue numbers the JS function to run.
   * A JS error becomes a Lua error at the caller's line.
   */
  private dispatch(L: number): number {
    const m = this.m;
    const state = this.runningState ?? this.byL.get(L);
    const index = Number(m._lua_tointegerx(L, LUA_REGISTRYINDEX - 1, 0));
    const fn = state?.hostFunction(index);
    if (!state || !fn) {
      this.pushString(L, `host function ${index} unavailable`);
      return m._lua_error(L);
    }
    state.hostCalls++;
    const prevCur = state.cur;
    state.cur = L;
    let results: LuaValue[];
    try {
      const n = m._lua_gettop(L);
      const args: LuaValue[] = [];
      for (let i = 1; i <= n; i++) args.push(state.read(i, 0));
      results = fn(state, args);
      m._lua_settop(L, 0);
      for (const v of results) state.push(v, 0);
    } catch (err) {
      state.cur = prevCur;
      m._lua_settop(L, 0);
      // luaL_where gives "script:line:" of the Lua code that called us.
      m._luaL_where(L, 1);
      this.pushString(L, err instanceof Error ? err.message : String(err));
      m._lua_concat(L, 2);
      return m._lua_error(L);
    }
    state.cur = prevCur;
    return results.length;
  }

  /**
   * Leaves the pattern functions in the registry of a new state, for the sandbox prelude to
   * install as string.find, string.match, string.gmatch and string.gsub (with the Lua halves of
   * gmatch and gsub, which it leaves under GMATCH_KEY and GSUB_KEY), and the line-table
   * function under LINES_KEY, which the prelude keeps for the host's own helpers.
   */
  installPatterns(L: number): void {
    const m = this.api;
    m._lua_createtable(L, 0, 6);
    for (const [name, f] of Object.entries(this.patternFns)) {
      m._lua_pushcclosure(L, f, 0);
      m._lua_setfield(L, -2, this.cstr(name));
    }
    m._lua_setfield(L, LUA_REGISTRYINDEX, this.cstr(PATTERNS_KEY));
    m._lua_pushcclosure(L, this.linesFn, 0);
    m._lua_setfield(L, LUA_REGISTRYINDEX, this.cstr(LINES_KEY));
  }

  /**
   * Stages a block of message lines (each ending LF), given in pieces, for the next call of the
   * lines function: `count` is how many it holds.
   */
  stageLines(block: Uint8Array[], count: number): void {
    const m = this.m;
    let len = 0;
    for (const b of block) len += b.length;
    if (len > this.stageSize) {
      if (this.stageBuf) m._free(this.stageBuf);
      this.stageSize = Math.max(len, 65536, this.stageSize * 2);
      this.stageBuf = m._malloc(this.stageSize);
      if (!this.stageBuf) {
        this.stageSize = 0;
        throw new Error('wasm heap exhausted');
      }
    }
    const heap: Uint8Array = m.HEAPU8;
    let at = this.stageBuf;
    for (const b of block) {
      heap.set(b, at);
      at += b.length;
    }
    const h: Uint32Array = m.HEAPU32;
    h[(this.stage + STAGE.ptr) >> 2] = this.stageBuf;
    h[(this.stage + STAGE.len) >> 2] = len;
    h[(this.stage + STAGE.count) >> 2] = count;
  }

  /**
   * string.find and string.match (str_find_aux of lstrlib.c): the same argument checks and
   * errors (the C API raises them, from this C function, as Lua's would), a plain search by
   * Buffer.indexOf, and the pattern matcher of lua-pattern.ts under the budget. The strings are
   * matched in place in the wasm heap and captures pushed from there.
   */
  private strFind(L: number, find: boolean): number {
    const m = this.api;
    const lenPtr = this.lenPtr;
    const top: number = m._lua_gettop(L);
    const s: number = m._luaL_checklstring(L, 1, lenPtr);
    const ls: number = m.HEAPU32[lenPtr >> 2];
    const p: number = m._luaL_checklstring(L, 2, lenPtr);
    const lp: number = m.HEAPU32[lenPtr >> 2];
    const init = top >= 3 ? posrelatI(m._luaL_optinteger(L, 3, 1n), ls) - 1 : 0;
    if (init > ls) {
      m._lua_pushnil(L);
      return 1;
    }
    // After the conversions above, which may have grown the heap.
    const heap: Uint8Array = m.HEAPU8;
    if (find && ((top >= 4 && m._lua_toboolean(L, 4)) || noSpecials(heap, p, p + lp))) {
      const at = this.plainSearch(heap, s, ls, init, p, lp);
      if (at < 0) {
        m._lua_pushnil(L);
        return 1;
      }
      m._lua_pushinteger(L, BigInt(at + 1));
      m._lua_pushinteger(L, BigInt(at + lp));
      return 2;
    }
    const start = this.runMatch(L, 1, heap, s, ls, init, p, lp, true, -1);
    if (start < 0) {
      m._lua_pushnil(L);
      return 1;
    }
    if (!find) return this.pushCaptures(L, 1, s, start, this.matcher.end);
    m._lua_pushinteger(L, BigInt(start - s + 1));
    m._lua_pushinteger(L, BigInt(this.matcher.end - s));
    return 2 + this.pushCaptures(L, 1, s, -1, -1);
  }

  /**
   * lmemfind, in linear time: the 0-based offset of the match, or -1. Buffer.indexOf, except
   * where the naive search is bounded by a few thousand comparisons (a header line), which is
   * cheaper than making the two views.
   */
  private plainSearch(heap: Uint8Array, s: number, ls: number, init: number, p: number, lp: number): number {
    if (lp === 0) return init;
    const span = ls - init;
    if (lp > span) return -1;
    const b = this.running;
    if (b) b.instructions += span >> 4;
    if (span * lp <= 4096) {
      const first = heap[p];
      const last = s + ls - lp;
      outer: for (let i = s + init; i <= last; i++) {
        if (heap[i] !== first) continue;
        for (let j = 1; j < lp; j++) if (heap[i + j] !== heap[p + j]) continue outer;
        return i - s;
      }
      return -1;
    }
    const hay = new Uint8Array(heap.buffer, heap.byteOffset + s, ls);
    return indexOf.call(hay, new Uint8Array(heap.buffer, heap.byteOffset + p, lp), init);
  }

  /**
   * Runs the matcher over the subject at `s` (length `ls`) from offset `init`; returns the
   * absolute start of the match or -1. A malformed pattern raises Lua's error with the position
   * of the Lua function `level` levels up; a budget stop raises the stop.
   */
  private runMatch(L: number, level: number, heap: Uint8Array, s: number, ls: number, init: number, p: number, lp: number, anchorable: boolean, lastMatch: number): number {
    const b = this.running;
    if (b?.stopped) this.raiseStop(L, b);
    let start = -1;
    let failure: unknown = null;
    // Only JS runs in here: a Lua error (a longjmp, thrown as a JS value) must not be caught.
    try {
      start = this.matcher.find(heap, s, s + ls, s + init, heap, p, p + lp, anchorable, lastMatch);
    } catch (err) {
      failure = err;
    }
    const steps = this.matcher.takeSteps();
    if (b) b.instructions += steps;
    if (failure !== null) {
      if (failure instanceof BudgetStop && b) this.raiseStop(L, b);
      // A PatternError, or a bug, which must not unwind through the Lua VM as a JS exception.
      this.raiseError(L, level, failure instanceof Error ? failure.message : String(failure));
    }
    return start;
  }

  /** luaL_error as seen from a C function: "chunk:line: message" of the caller `level` up. */
  private raiseError(L: number, level: number, message: string): never {
    this.api._luaL_where(L, level);
    this.pushString(L, message);
    this.api._lua_concat(L, 2);
    return this.api._lua_error(L) as never;
  }

  /**
   * push_captures of lstrlib.c: the captures of the last match, or the whole match
   * `start`..`end` when the pattern has none (none at all when `start` is -1).
   */
  private pushCaptures(L: number, level: number, s: number, start: number, end: number): number {
    const m = this.api;
    const mt = this.matcher;
    const n = mt.level;
    if (n === 0) {
      if (start < 0) return 0;
      m._lua_pushlstring(L, start, end - start);
      return 1;
    }
    for (let i = 0; i < n; i++) if (mt.capLen[i] === CAP_UNFINISHED) this.raiseError(L, level, 'unfinished capture');
    if (n > 16) m._luaL_checkstack(L, n, this.cstr('too many captures'));
    for (let i = 0; i < n; i++) {
      const len = mt.capLen[i];
      if (len === CAP_POSITION) m._lua_pushinteger(L, BigInt(mt.capInit[i] - s + 1));
      else m._lua_pushlstring(L, mt.capInit[i], len);
    }
    return n;
  }

  /**
   * string.gmatch: lstrlib.c's argument checks, then the Lua half from the prelude makes the
   * iterator (called from here, as native gmatch is a C function: a yield cannot cross it).
   */
  private strGmatch(L: number): number {
    const m = this.api;
    m._luaL_checklstring(L, 1, this.lenPtr);
    const ls: number = m.HEAPU32[this.lenPtr >> 2];
    m._luaL_checklstring(L, 2, 0);
    let init = posrelatI(m._luaL_optinteger(L, 3, 1n), ls) - 1;
    if (init > ls) init = ls + 1;
    m._lua_getfield(L, LUA_REGISTRYINDEX, this.cstr(GMATCH_KEY));
    m._lua_pushvalue(L, 1);
    m._lua_pushvalue(L, 2);
    m._lua_pushnumber(L, init);
    m._lua_callk(L, 3, 1, 0, 0);
    return 1;
  }

  /** string.gsub: lstrlib.c's argument checks, in its order, then the Lua half from the prelude. */
  private strGsub(L: number): number {
    const m = this.api;
    m._luaL_checklstring(L, 1, this.lenPtr);
    const srcl: number = m.HEAPU32[this.lenPtr >> 2];
    m._luaL_checklstring(L, 2, 0);
    const tr: number = m._lua_type(L, 3);
    const maxS: bigint = m._luaL_optinteger(L, 4, BigInt(srcl + 1));
    if (tr !== T_NUMBER && tr !== T_STRING && tr !== T_FUNCTION && tr !== T_TABLE) m._luaL_typeerror(L, 3, this.cstr('string/function/table'));
    // add_s reads a number replacement with lua_tolstring, which makes it a string in place.
    if (tr === T_NUMBER) m._lua_tolstring(L, 3, 0);
    m._lua_getfield(L, LUA_REGISTRYINDEX, this.cstr(GSUB_KEY));
    m._lua_pushvalue(L, 1);
    m._lua_pushvalue(L, 2);
    m._lua_pushvalue(L, 3);
    m._lua_pushinteger(L, maxS);
    m._lua_callk(L, 4, 2, 0, 0);
    return 2;
  }

  /** The (s, p, src, last) arguments of the gmatch/gsub steps, as heap pointers and offsets. */
  private stepArgs(L: number): { s: number; ls: number; p: number; lp: number; src: number; last: number } | null {
    const m = this.api;
    const s: number = m._lua_tolstring(L, 1, this.lenPtr);
    const ls: number = m.HEAPU32[this.lenPtr >> 2];
    const p: number = m._lua_tolstring(L, 2, this.lenPtr);
    const lp: number = m.HEAPU32[this.lenPtr >> 2];
    if (!s || !p) return null;
    return { s, ls, p, lp, src: m._lua_tonumberx(L, 3, 0), last: m._lua_tonumberx(L, 4, 0) };
  }

  /**
   * gmatch_step(s, p, src, last), for the prelude's gmatch iterator: the next match from offset
   * `src`, skipping an empty one at `last` (the previous end, or -1). Returns its end offset and
   * its captures (or the whole match), or nothing. Offsets are floats: they never reach scripts.
   */
  private gmatchStep(L: number): number {
    const m = this.api;
    const a = this.stepArgs(L);
    if (!a) return 0;
    const { s, ls, p, lp, src, last } = a;
    // Errors name the caller of the iterator (level 1 is the iterator).
    const start = this.runMatch(L, 2, m.HEAPU8, s, ls, src, p, lp, false, last >= 0 ? s + last : -1);
    if (start < 0) return 0;
    const end = this.matcher.end;
    m._lua_pushnumber(L, end - s);
    return 1 + this.pushCaptures(L, 2, s, start, end);
  }

  /**
   * gsub_step(s, p, src, last, values), for the prelude's gsub: the next match as gmatch_step
   * finds it (but with '^' anchoring). Returns its start and end offsets, the number of
   * captures (negated when one is unfinished, which is then `false`), and when `values` is
   * true the captures (or the whole match); or nothing. The caller of gsub is three levels up
   * (gsub, its Lua half, here).
   */
  private gsubStep(L: number): number {
    const m = this.api;
    const a = this.stepArgs(L);
    if (!a) return 0;
    const { s, ls, p, lp, src, last } = a;
    const start = this.runMatch(L, 3, m.HEAPU8, s, ls, src, p, lp, true, last >= 0 ? s + last : -1);
    if (start < 0) return 0;
    const mt = this.matcher;
    const end = mt.end;
    const n = mt.level;
    m._lua_pushnumber(L, start - s);
    m._lua_pushnumber(L, end - s);
    if (!m._lua_toboolean(L, 5)) {
      // Only the positions (a replacement string without captures in it).
      m._lua_pushnumber(L, n);
      return 3;
    }
    if (n === 0) {
      m._lua_pushnumber(L, 0);
      m._lua_pushlstring(L, start, end - start);
      return 4;
    }
    let unfinished = false;
    for (let i = 0; i < n; i++) if (mt.capLen[i] === CAP_UNFINISHED) unfinished = true;
    m._lua_pushnumber(L, unfinished ? -n : n);
    if (n > 16) m._luaL_checkstack(L, n, this.cstr('too many captures'));
    for (let i = 0; i < n; i++) {
      const len = mt.capLen[i];
      if (len === CAP_UNFINISHED) m._lua_pushboolean(L, 0);
      else if (len === CAP_POSITION) m._lua_pushinteger(L, BigInt(mt.capInit[i] - s + 1));
      else m._lua_pushlstring(L, mt.capInit[i], len);
    }
    return 3 + n;
  }

  pushHostClosure(L: number, index: number): void {
    this.m._lua_pushinteger(L, BigInt(index));
    this.m._lua_pushcclosure(L, this.hostFn, 1);
  }

  registerState(s: LuaState): void {
    this.byL.set(s.L, s);
  }

  unregisterState(s: LuaState): void {
    this.byL.delete(s.L);
  }

  static async create(): Promise<LuaVm> {
    const { module, exports } = await initializeWithExports();
    return new LuaVm(module, exports);
  }

  /**
   * A new state with its own memory cap; returns its pointer and budget. With `region` bytes
   * (and the wasm allocator), the state is built in one block of that size for as long as it
   * fits, so that a snapshot of it can be taken and restored (see snapshot).
   */
  newState(memoryLimit: number, region = 0): { L: number; budget: StateBudget; id: number } {
    const ptr: number = this.m._malloc(UD.size);
    if (!ptr) throw new Error('cannot create a Lua state (wasm heap exhausted)');
    const budget = new StateBudget(this.m, ptr, memoryLimit);
    const r: number = region > 0 && this.arena ? this.m._malloc(region) : 0;
    if (r) {
      const h: Int32Array = this.m.HEAP32;
      h[(ptr + UD.rstart) >> 2] = r;
      h[(ptr + UD.rcur) >> 2] = r;
      h[(ptr + UD.rend) >> 2] = r + region;
    }
    const L = this.m._lua_newstate(this.allocFn, ptr);
    if (!L) {
      budget.closed = true;
      this.freeState(ptr);
      throw new Error('cannot create a Lua state (out of memory)');
    }
    this.budgetOf.set(ptr, budget);
    this.statesCreated++;
    this.statesOpen++;
    return { L, budget, id: ptr };
  }

  closeState(L: number, id: number): void {
    const budget = this.budgetOf.get(id);
    if (budget && this.running === budget) this.running = null;
    // An arena goes at once, every object with it; the module's own allocator needs the walk.
    if (this.arena) this.freeState(id);
    else {
      this.m._lua_close(L);
      this.m._free(id);
    }
    if (budget) budget.closed = true;
    this.budgetOf.delete(id);
    this.statesOpen--;
  }

  /** Frees an arena state's blocks, its region and its user data. */
  private freeState(id: number): void {
    this.arena?.drop(id);
    const region: number = this.m.HEAP32[(id + UD.rstart) >> 2];
    if (region) this.m._free(region);
    this.m._free(id);
  }

  /**
   * Seals the region of state `id` and copies it with the state's user data, or returns null
   * when the state does not lie in its region whole (no region, or it outgrew it). Blocks the
   * state takes from now on come from malloc; restore frees them and writes the copy back,
   * which makes the state again what it was here, byte for byte.
   */
  snapshot(id: number): StateSnapshot | null {
    const h: Int32Array = this.m.HEAP32;
    const start = h[(id + UD.rstart) >> 2];
    const cur = h[(id + UD.rcur) >> 2];
    if (!start || h[(id + UD.spilled) >> 2]) return null;
    h[(id + UD.rend) >> 2] = cur;
    return { region: this.m.HEAPU8.slice(start, cur), ud: this.m.HEAPU8.slice(id, id + UD.size) };
  }

  /** Puts state `id` back as its snapshot found it (see snapshot). */
  restore(id: number, snap: StateSnapshot): void {
    this.arena!.drop(id);
    const heap: Uint8Array = this.m.HEAPU8;
    heap.set(snap.region, this.m.HEAP32[(id + UD.rstart) >> 2]);
    heap.set(snap.ud, id);
    const budget = this.budgetOf.get(id);
    if (budget) budget.stopped = null;
  }

  /**
   * The standard libraries a sandboxed state keeps (S1), without io and package, which the
   * sandbox removes anyway: they are the costliest to open (file handles, search paths), and a
   * state is opened per connection. debug serves the prelude only.
   */
  openLibs(L: number): number {
    const m = this.m;
    const libs: [string, (L: number) => number][] = [
      ['_G', m._luaopen_base],
      ['coroutine', m._luaopen_coroutine],
      ['table', m._luaopen_table],
      ['os', m._luaopen_os],
      ['string', m._luaopen_string],
      ['math', m._luaopen_math],
      ['utf8', m._luaopen_utf8],
      ['debug', m._luaopen_debug],
    ];
    // Registered in package.loaded as luaL_requiref does: argument errors name a library
    // function by looking it up there ("bad argument #1 to 'string.find'").
    m._luaL_getsubtable(L, LUA_REGISTRYINDEX, this.cstr('_LOADED'));
    let collector = 0;
    for (const [name, open] of libs) {
      // Each pushes its library table (base fills the globals table and pushes it).
      open(L);
      if (collector === 0) {
        m._lua_getfield(L, -1, this.cstr('collectgarbage'));
        collector = m._luaL_ref(L, LUA_REGISTRYINDEX);
        this.collect(L, collector, 'stop');
      }
      m._lua_pushvalue(L, -1);
      m._lua_setfield(L, -3, this.cstr(name));
      m._lua_setglobal(L, this.cstr(name));
    }
    m._lua_settop(L, -2);
    return collector;
  }

  /**
   * collectgarbage(what) of the base library, kept under the registry reference `collector`
   * (lua_gc itself is not exported by this build). Options without arguments only, which
   * cannot fail: the call is unprotected.
   */
  collect(L: number, collector: number, what: 'stop' | 'restart'): void {
    const m = this.m;
    m._lua_rawgeti(L, LUA_REGISTRYINDEX, BigInt(collector));
    this.pushString(L, what);
    m._lua_callk(L, 1, 0, 0, 0);
  }

  /** Arms the count hook for a call on `L`. */
  armHook(L: number): void {
    this.m._lua_sethook(L, this.hookFn, this.watch?.L === L ? LUA_MASKCOUNT | LUA_MASKCALL : LUA_MASKCOUNT, HOOK_EVERY);
  }

  /**
   * For the host's own helpers, which run outside any budget: with a count hook set, Lua 5.4
   * leaves its fast dispatch loop at every branch and call (count-hook-patch.ts; at every
   * instruction without the patch). Every protected call arms it again.
   */
  disarmHook(L: number): void {
    this.m._lua_sethook(L, 0, 0, 0);
  }

  private scratchFor(n: number): number {
    if (n > this.scratchSize) {
      if (this.scratch) this.m._free(this.scratch);
      this.scratchSize = Math.max(n, 4096, this.scratchSize * 2);
      this.scratch = this.m._malloc(this.scratchSize);
      if (!this.scratch) throw new Error('wasm heap exhausted');
    }
    return this.scratch;
  }

  /** Pushes bytes as a Lua string, byte for byte. */
  pushBytes(L: number, bytes: Uint8Array): void {
    const p = this.scratchFor(bytes.length + 1);
    this.m.HEAPU8.set(bytes, p);
    this.m._lua_pushlstring(L, p, bytes.length);
  }

  pushString(L: number, s: string): void {
    // ASCII fast path avoids a Buffer allocation for most names and short values.
    let ascii = true;
    for (let i = 0; i < s.length; i++) {
      if (s.charCodeAt(i) > 127) {
        ascii = false;
        break;
      }
    }
    if (!ascii) return this.pushBytes(L, Buffer.from(s, 'utf8'));
    const p = this.scratchFor(s.length + 1);
    const heap = this.m.HEAPU8;
    for (let i = 0; i < s.length; i++) heap[p + i] = s.charCodeAt(i);
    this.m._lua_pushlstring(L, p, s.length);
  }

  /** The bytes of the string (or number) at `idx`; null when it is neither. */
  toBytes(L: number, idx: number): Buffer | null {
    const p = this.m._lua_tolstring(L, idx, this.lenPtr);
    if (!p) return null;
    const len = this.m.HEAPU32[this.lenPtr >> 2];
    return Buffer.from(this.m.HEAPU8.subarray(p, p + len));
  }

  toStr(L: number, idx: number): string | null {
    const p = this.m._lua_tolstring(L, idx, this.lenPtr);
    if (!p) return null;
    const len = this.m.HEAPU32[this.lenPtr >> 2];
    return Buffer.from(this.m.HEAPU8.buffer, this.m.HEAPU8.byteOffset + p, len).toString('utf8');
  }

  /** A NUL-terminated C string kept for the life of the VM (names passed to the C API). */
  private readonly cstrings = new Map<string, number>();
  cstr(s: string): number {
    let p = this.cstrings.get(s);
    if (p === undefined) {
      p = this.m.stringToNewUTF8(s) as number;
      this.cstrings.set(s, p);
    }
    return p;
  }
}
