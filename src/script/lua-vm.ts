import { LuaWasm } from 'wasmoon';
import type { LuaState, LuaValue } from './lua-state.js';

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

export const T_NIL = 0;
export const T_BOOLEAN = 1;
export const T_NUMBER = 3;
export const T_STRING = 4;
export const T_TABLE = 5;
export const T_FUNCTION = 6;

/** Why a call was stopped by the host rather than by the script's own error. */
export type Stop = 'timeout' | 'instructions' | 'memory';

/** Accounting of one Lua state, looked up by the allocator through its user-data id. */
export interface StateBudget {
  memoryUsed: number;
  memoryLimit: number;
  /** Set when the host stopped the running call; every further instruction raises again. */
  stopped: Stop | null;
  deadline: number;
  instructions: number;
  maxInstructions: number;
}

const HOOK_EVERY = 1000;

/**
 * One WebAssembly instance of Lua. It owns the shared allocator (with a per-state memory cap)
 * and the shared count hook (with per-call deadlines), because wasm function-table slots are
 * scarce and a JS call per state would be wasted. Only one state runs at a time (JS is single
 * threaded), so the hook charges whichever state is `running`.
 */
export class LuaVm {
  readonly m: LuaModule;
  private readonly budgets = new Map<number, StateBudget>();
  private nextId = 1;
  readonly allocFn: number;
  readonly hookFn: number;
  /** The budget and state inside a call right now. */
  running: StateBudget | null = null;
  runningState: LuaState | null = null;
  private readonly byL = new Map<number, LuaState>();
  readonly hostFn: number;
  statesCreated = 0;
  statesOpen = 0;
  private scratch = 0;
  private scratchSize = 0;
  private readonly lenPtr: number;

  private constructor(m: LuaModule) {
    this.m = m;
    this.lenPtr = m._malloc(8);
    this.allocFn = m.addFunction((ud: number, ptr: number, osize: number, nsize: number): number => {
      const b = this.budgets.get(ud);
      if (nsize === 0) {
        if (ptr) {
          if (b) b.memoryUsed -= osize;
          m._free(ptr);
        }
        return 0;
      }
      // With a null block, osize is a type tag, not a size (Lua 5.4 manual §4.6).
      const delta = ptr ? nsize - osize : nsize;
      // The cap binds the script's own calls only. The host's pushes of globals and arguments
      // (bounded by the SMTP limits) run unprotected, where a failed allocation would abort
      // the whole VM instead of raising a catchable error.
      if (b && delta > 0 && b.memoryUsed + delta > b.memoryLimit && this.running === b) {
        if (!b.stopped) b.stopped = 'memory';
        return 0;
      }
      const p = m._realloc(ptr, nsize);
      if (p && b) b.memoryUsed += delta;
      return p;
    }, 'iiiii');
    this.hookFn = m.addFunction((L: number): void => {
      const b = this.running;
      if (!b) return;
      b.instructions += HOOK_EVERY;
      if (!b.stopped) {
        if (b.instructions > b.maxInstructions) b.stopped = 'instructions';
        else if (performance.now() > b.deadline) b.stopped = 'timeout';
      }
      if (b.stopped) {
        // From now on every instruction raises, so a pcall loop cannot swallow the stop.
        m._lua_sethook(L, this.hookFn, LUA_MASKCOUNT, 1);
        this.pushString(L, `script stopped: ${b.stopped} budget exceeded`);
        m._lua_error(L);
      }
    }, 'vii');
    this.hostFn = m.addFunction((L: number): number => this.dispatch(L), 'ii');
  }

  /**
   * The one C function behind every host function: its upvalue names the JS function to run.
   * A JS error becomes a Lua error at the caller's line.
   */
  private dispatch(L: number): number {
    const m = this.m;
    const state = this.runningState ?? this.byL.get(L);
    const name = this.toStr(L, LUA_REGISTRYINDEX - 1);
    const fn = name ? state?.hostFunction(name) : undefined;
    if (!state || !fn) {
      this.pushString(L, `host function ${name ?? '?'} unavailable`);
      return m._lua_error(L);
    }
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

  pushHostClosure(L: number, name: string): void {
    this.pushString(L, name);
    this.m._lua_pushcclosure(L, this.hostFn, 1);
  }

  registerState(s: LuaState): void {
    this.byL.set(s.L, s);
  }

  unregisterState(s: LuaState): void {
    this.byL.delete(s.L);
  }

  static async create(): Promise<LuaVm> {
    const lw = await LuaWasm.initialize();
    return new LuaVm(lw.module);
  }

  /** A new state with its own memory cap; returns its pointer and budget. */
  newState(memoryLimit: number): { L: number; budget: StateBudget; id: number } {
    const id = this.nextId++;
    const budget: StateBudget = { memoryUsed: 0, memoryLimit, stopped: null, deadline: Infinity, instructions: 0, maxInstructions: Infinity };
    this.budgets.set(id, budget);
    const L = this.m._lua_newstate(this.allocFn, id);
    if (!L) {
      this.budgets.delete(id);
      throw new Error('cannot create a Lua state (out of memory)');
    }
    this.statesCreated++;
    this.statesOpen++;
    return { L, budget, id };
  }

  closeState(L: number, id: number): void {
    this.m._lua_close(L);
    this.budgets.delete(id);
    this.statesOpen--;
  }

  /** Arms the count hook for a call on `L`. */
  armHook(L: number): void {
    this.m._lua_sethook(L, this.hookFn, LUA_MASKCOUNT, HOOK_EVERY);
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
