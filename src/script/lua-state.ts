import {
  LUA_ERRMEM,
  LUA_MULTRET,
  LUA_OK,
  LUA_REGISTRYINDEX,
  LUA_RIDX_GLOBALS,
  T_BOOLEAN,
  T_FUNCTION,
  T_NIL,
  T_NUMBER,
  T_STRING,
  T_TABLE,
  type LuaVm,
  type StateBudget,
  type StateSnapshot,
  type Stop,
} from './lua-vm.js';
import { randomInt } from 'node:crypto';
import { SANDBOX_PRELUDE } from './sandbox.js';
import { internalChunk } from './compile.js';

/** A state kept to be restored (LuaState.keep). */
export interface StateTemplate {
  snap: StateSnapshot;
  collecting: boolean;
}

/** A value crossing between JS and Lua. Buffers become Lua strings byte for byte. */
export type LuaValue = null | boolean | number | string | Buffer | LuaValue[] | { [key: string]: LuaValue };

export type CallResult =
  | { kind: 'ok'; values: LuaValue[] }
  | { kind: 'absent' }
  | { kind: 'error'; message: string }
  | { kind: 'stopped'; stop: Stop; message: string };

export interface CallBudget {
  timeMs: number;
  instructions: number;
}

/** Host functions a script may call (`print`, `require`, VPOP3 helpers): args in, return values out. */
export type HostFunction = (state: LuaState, args: LuaValue[]) => LuaValue[];

const MAX_DEPTH = 32;

/**
 * One sandboxed Lua state over the raw C API: protected calls with a traceback handler,
 * multiple returns, byte-exact strings, and the per-call budgets of its VM.
 */
export class LuaState {
  readonly L: number;
  private readonly id: number;
  readonly budget: StateBudget;
  private tracebackRef = 0;
  /** The registry reference of collectgarbage. */
  private readonly collector: number;
  /** Whether the collector runs (it waits for the script's first call, see the constructor). */
  private collecting = false;
  /** Set while one of our own chunks runs (runInternal). */
  private internal = false;
  closed = false;
  /** The host functions of this state, by the number their closure carries. */
  private host: HostFunction[] = [];
  /** Host functions called so far (see ScriptHost's templates: a main chunk must call none). */
  hostCalls = 0;
  /** The registry reference of the library's math.randomseed, kept by watching(). */
  private seeder = 0;

  constructor(
    readonly vm: LuaVm,
    memoryLimit: number,
    readonly name: string,
    region = 0,
  ) {
    const s = vm.newState(memoryLimit, region);
    this.L = s.L;
    this.id = s.id;
    this.budget = s.budget;
    // The collector waits until the script's own code first runs: the libraries, the sandbox
    // and the helpers are all live, and a state is made per connection, so collecting while it
    // is being built (as its heap doubles from nothing) would only walk them again and again.
    this.collector = vm.openLibs(this.L);
    // Budgeted pattern matching, which the prelude installs in the string library.
    vm.installPatterns(this.L);
    this.setupHostDispatch();
    const r = this.runInternal(SANDBOX_PRELUDE, '=sandbox');
    if (r.kind !== 'ok') throw new Error(`sandbox setup failed: ${r.kind === 'error' || r.kind === 'stopped' ? r.message : r.kind}`);
    // The prelude leaves the traceback handler on the registry under a fixed key.
    const m = vm.m;
    m._lua_getfield(this.L, LUA_REGISTRYINDEX, vm.cstr('moonpost.traceback'));
    this.tracebackRef = m._luaL_ref(this.L, LUA_REGISTRYINDEX);
  }

  private setupHostDispatch(): void {
    this.vm.registerState(this);
  }

  /** Makes `fn` callable from Lua as the global `name`. */
  define(name: string, fn: HostFunction): void {
    this.vm.pushHostClosure(this.L, this.host.push(fn) - 1);
    this.vm.m._lua_setglobal(this.L, this.vm.cstr(name));
  }

  /** Makes each of `fns` callable from Lua as a field of the global table `name`, made here. */
  defineTable(name: string, fns: [string, HostFunction][]): void {
    const m = this.vm.m;
    m._lua_createtable(this.L, 0, fns.length);
    for (const [field, fn] of fns) {
      this.vm.pushHostClosure(this.L, this.host.push(fn) - 1);
      m._lua_setfield(this.L, -2, this.vm.cstr(field));
    }
    m._lua_setglobal(this.L, this.vm.cstr(name));
  }

  hostFunction(index: number): HostFunction | undefined {
    return this.host[index];
  }

  /** Runs one of our own chunks, compiled once per VM (a state costs less to make). */
  runInternal(code: string, chunkName: string): CallResult {
    this.internal = true;
    try {
      return this.loadAndRun(internalChunk(this.vm, code, chunkName), chunkName, 'b');
    } finally {
      this.internal = false;
    }
  }

  /**
   * Runs one of our own chunks with the host's primitives and the globals table as its
   * arguments (see SANDBOX_PRELUDE), and keeps the functions it returns in the registry.
   * Returns their references, or null when the chunk failed.
   */
  internalFunctions(code: string, chunkName: string): number[] | null {
    const m = this.vm.m;
    const L = this.L;
    const base = m._lua_gettop(L);
    if (this.load(internalChunk(this.vm, code, chunkName), chunkName, 'b') !== LUA_OK) {
      m._lua_settop(L, base);
      return null;
    }
    m._lua_getfield(L, LUA_REGISTRYINDEX, this.vm.cstr('moonpost.prims'));
    m._lua_rawgeti(L, LUA_REGISTRYINDEX, BigInt(LUA_RIDX_GLOBALS));
    if (m._lua_pcallk(L, 2, LUA_MULTRET, 0, 0, 0) !== LUA_OK) {
      m._lua_settop(L, base);
      return null;
    }
    const refs: number[] = [];
    for (let i = m._lua_gettop(L); i > base; i--) {
      if (m._lua_type(L, -1) !== T_FUNCTION) {
        m._lua_settop(L, base);
        return null;
      }
      refs.unshift(m._luaL_ref(L, LUA_REGISTRYINDEX));
    }
    return refs;
  }

  /** Loads a chunk (text or precompiled bytecode) and runs it. */
  loadAndRun(code: Buffer, chunkName: string, mode: 't' | 'b', budget?: CallBudget): CallResult {
    const m = this.vm.m;
    const L = this.L;
    const base = m._lua_gettop(L);
    const status = this.load(code, chunkName, mode);
    if (status !== LUA_OK) {
      const message = this.vm.toStr(L, -1) ?? 'load error';
      m._lua_settop(L, base);
      return status === LUA_ERRMEM ? { kind: 'stopped', stop: 'memory', message } : { kind: 'error', message };
    }
    return this.pcall(base, 0, budget);
  }

  load(code: Buffer, chunkName: string, mode: 't' | 'b'): number {
    const m = this.vm.m;
    const p = m._malloc(code.length + 1);
    m.HEAPU8.set(code, p);
    try {
      return m._luaL_loadbufferx(this.L, p, code.length, this.vm.cstr(chunkName), this.vm.cstr(mode));
    } finally {
      m._free(p);
    }
  }

  /**
   * Runs `fn` (the script's main chunk, as a template is made) and says whether it called
   * os.time, os.clock, os.date, math.random or math.randomseed: a snapshot would fix their
   * results for every session made from it. Keeps the library's math.randomseed for restore().
   */
  watching<T>(fn: () => T): { result: T; called: boolean } {
    const vm = this.vm;
    const m = vm.m;
    const L = this.L;
    m._lua_createtable(L, 0, 5);
    for (const [lib, names] of [
      ['os', ['time', 'clock', 'date']],
      ['math', ['random', 'randomseed']],
    ] as const) {
      if (this.rawGetGlobal(lib) === T_TABLE) {
        for (const name of names) {
          vm.pushString(L, name);
          if (m._lua_rawget(L, -2) !== T_FUNCTION) {
            m._lua_settop(L, -2);
            continue;
          }
          if (lib === 'math' && name === 'randomseed') {
            m._lua_pushvalue(L, -1);
            this.seeder = m._luaL_ref(L, LUA_REGISTRYINDEX);
          }
          m._lua_pushboolean(L, 1);
          m._lua_rawset(L, -4);
        }
      }
      m._lua_settop(L, -2);
    }
    const set: number = m._luaL_ref(L, LUA_REGISTRYINDEX);
    vm.watch = { L, set, seen: false };
    try {
      const result = fn();
      return { result, called: vm.watch.seen };
    } finally {
      vm.watch = null;
      // The call hook the chunk ran with must not outlive it (every call arms its own hook).
      vm.disarmHook(L);
      m._luaL_unref(L, LUA_REGISTRYINDEX, set);
    }
  }

  /**
   * The state as it is now, to come back to with restore(), or null when it cannot be kept
   * (not built in a region whole, or no seeder from watching()).
   */
  keep(): StateTemplate | null {
    if (!this.seeder) return null;
    const snap = this.vm.snapshot(this.id);
    return snap && { snap, collecting: this.collecting };
  }

  /**
   * Makes this state again what it was when `t` was kept, byte for byte, except for a new seed
   * of math.random (else every session made from it would draw the same numbers).
   */
  restore(t: StateTemplate): void {
    this.vm.restore(this.id, t.snap);
    this.collecting = t.collecting;
    this.internal = false;
    this.cur = 0;
    const m = this.vm.m;
    m._lua_rawgeti(this.L, LUA_REGISTRYINDEX, BigInt(this.seeder));
    m._lua_pushinteger(this.L, BigInt(randomInt(2 ** 47)));
    m._lua_pushinteger(this.L, BigInt(randomInt(2 ** 47)));
    m._lua_callk(this.L, 2, 0, 0, 0);
  }

  /** Is `name` a global function of the script? */
  hasFunction(name: string): boolean {
    const t = this.rawGetGlobal(name);
    this.vm.m._lua_settop(this.L, -2);
    return t === T_FUNCTION;
  }

  /**
   * Pushes global `name` and returns its type. Raw, like setGlobal: a metatable the script
   * put on _G must never run outside a protected, budgeted call, where an error would abort
   * the whole VM and a loop would stall the process.
   */
  private rawGetGlobal(name: string): number {
    const m = this.vm.m;
    const L = this.L;
    m._lua_rawgeti(L, LUA_REGISTRYINDEX, BigInt(LUA_RIDX_GLOBALS));
    this.vm.pushString(L, name);
    const t = m._lua_rawget(L, -2);
    m._lua_rotate(L, -2, 1);
    m._lua_settop(L, -2);
    return t;
  }

  /** Calls the global function `name` (when it exists) with `args` under `budget`. */
  call(name: string, args: LuaValue[], budget: CallBudget, bytes = false): CallResult {
    const m = this.vm.m;
    const L = this.L;
    const base = m._lua_gettop(L);
    if (this.rawGetGlobal(name) !== T_FUNCTION) {
      m._lua_settop(L, base);
      return { kind: 'absent' };
    }
    for (const a of args) this.push(a, 0);
    return this.pcall(base, args.length, budget, bytes);
  }

  /** call() of a function kept by internalFunctions. */
  callRef(ref: number, args: LuaValue[], budget: CallBudget, bytes = false): CallResult {
    const m = this.vm.m;
    const L = this.L;
    const base = m._lua_gettop(L);
    // Room for many arguments; a state out of memory cannot grow its stack.
    if (args.length > 8 && !m._lua_checkstack(L, args.length + 8)) return { kind: 'stopped', stop: 'memory', message: 'not enough memory for the call\'s arguments' };
    m._lua_rawgeti(L, LUA_REGISTRYINDEX, BigInt(ref));
    for (const a of args) this.push(a, 0);
    return this.pcall(base, args.length, budget, bytes);
  }

  private pcall(base: number, nargs: number, budget?: CallBudget, bytes = false): CallResult {
    const m = this.vm.m;
    const L = this.L;
    if (!this.collecting && !this.internal) {
      this.collecting = true;
      this.vm.collect(L, this.collector, 'restart');
    }
    // Put the traceback handler under the function and its arguments.
    m._lua_rawgeti(L, LUA_REGISTRYINDEX, BigInt(this.tracebackRef));
    m._lua_rotate(L, base + 1, 1);
    const b = this.budget;
    const prev = this.vm.running;
    const prevState = this.vm.runningState;
    this.vm.running = b;
    this.vm.runningState = this;
    b.instructions = 0;
    b.maxInstructions = budget?.instructions ?? Infinity;
    b.deadline = budget ? performance.now() + budget.timeMs : Infinity;
    this.vm.armHook(L);
    let status: number;
    try {
      status = m._lua_pcallk(L, nargs, LUA_MULTRET, base + 1, 0, 0);
    } finally {
      this.vm.running = prev;
      this.vm.runningState = prevState;
    }
    if (status !== LUA_OK) {
      const message = this.vm.toStr(L, -1) ?? (status === LUA_ERRMEM ? 'not enough memory' : 'error object is not a string');
      m._lua_settop(L, base);
      if (b.stopped) return { kind: 'stopped', stop: b.stopped, message };
      if (status === LUA_ERRMEM) return { kind: 'stopped', stop: 'memory', message };
      return { kind: 'error', message };
    }
    const top = m._lua_gettop(L);
    const values: LuaValue[] = [];
    for (let i = base + 2; i <= top; i++) values.push(this.read(i, 0, bytes));
    m._lua_settop(L, base);
    if (b.stopped) return { kind: 'stopped', stop: b.stopped, message: `script stopped: ${b.stopped} budget exceeded` };
    return { kind: 'ok', values };
  }

  /** The thread push/read work on: the main state, or a coroutine calling a host function. */
  cur = 0;

  push(v: LuaValue | undefined, depth: number): void {
    const m = this.vm.m;
    const L = this.cur || this.L;
    if (v === null || v === undefined) m._lua_pushnil(L);
    else if (typeof v === 'boolean') m._lua_pushboolean(L, v ? 1 : 0);
    else if (typeof v === 'number') {
      if (Number.isSafeInteger(v)) m._lua_pushinteger(L, BigInt(v));
      else m._lua_pushnumber(L, v);
    } else if (typeof v === 'string') this.vm.pushString(L, v);
    else if (Buffer.isBuffer(v)) this.vm.pushBytes(L, v);
    else if (depth > MAX_DEPTH) m._lua_pushnil(L);
    else if (Array.isArray(v)) {
      m._lua_createtable(L, v.length, 0);
      for (let i = 0; i < v.length; i++) {
        this.push(v[i], depth + 1);
        m._lua_rawseti(L, -2, BigInt(i + 1));
      }
    } else {
      const keys = Object.keys(v);
      m._lua_createtable(L, 0, keys.length);
      for (const k of keys) {
        this.push(v[k], depth + 1);
        m._lua_setfield(L, -2, this.vm.cstr(k));
      }
    }
  }

  /** Reads the value at `idx`. Tables with keys 1..n become arrays, others objects. */
  read(idx: number, depth: number, bytes = false): LuaValue {
    const m = this.vm.m;
    const L = this.cur || this.L;
    switch (m._lua_type(L, idx)) {
      case T_NIL:
        return null;
      case T_BOOLEAN:
        return m._lua_toboolean(L, idx) !== 0;
      case T_NUMBER:
        return m._lua_isinteger(L, idx) ? Number(m._lua_tointegerx(L, idx, 0)) : m._lua_tonumberx(L, idx, 0);
      case T_STRING:
        return bytes ? this.vm.toBytes(L, idx) : this.vm.toStr(L, idx);
      case T_TABLE:
        return depth > MAX_DEPTH ? null : this.readTable(idx, depth, bytes);
      default:
        return null;
    }
  }

  private readTable(idx: number, depth: number, bytes = false): LuaValue {
    const m = this.vm.m;
    const L = this.cur || this.L;
    const abs = m._lua_absindex(L, idx);
    const obj: Record<string, LuaValue> = {};
    const arr: LuaValue[] = [];
    let isArray = true;
    let count = 0;
    m._lua_pushnil(L);
    while (m._lua_next(L, abs) !== 0) {
      if (++count > 100000) {
        m._lua_settop(L, -3);
        break;
      }
      const kt = m._lua_type(L, -2);
      const value = this.read(-1, depth + 1, bytes);
      if (kt === T_NUMBER && m._lua_isinteger(L, -2)) {
        const k = Number(m._lua_tointegerx(L, -2, 0));
        if (k >= 1) arr[k - 1] = value;
        obj[String(k)] = value;
      } else if (kt === T_STRING) {
        isArray = false;
        // lua_tolstring on a key would confuse lua_next only for non-strings; this is a string.
        obj[this.vm.toStr(L, -2) ?? ''] = value;
      } else if (kt === T_BOOLEAN) {
        isArray = false;
        obj[String(m._lua_toboolean(L, -2) !== 0)] = value;
      } else isArray = false;
      m._lua_settop(L, -2);
    }
    if (isArray && arr.length > 0) {
      for (let i = 0; i < arr.length; i++) if (arr[i] === undefined) arr[i] = null;
      return arr;
    }
    return obj;
  }

  /** Reads a global as a JS value (after a callback, for IN/OUT globals). */
  getGlobal(name: string): LuaValue {
    this.rawGetGlobal(name);
    const v = this.read(-1, 0);
    this.vm.m._lua_settop(this.L, -2);
    return v;
  }

  /** Sets a global without metamethods (see rawGetGlobal). */
  setGlobal(name: string, v: LuaValue): void {
    const m = this.vm.m;
    const L = this.L;
    m._lua_rawgeti(L, LUA_REGISTRYINDEX, BigInt(LUA_RIDX_GLOBALS));
    this.vm.pushString(L, name);
    this.push(v, 0);
    m._lua_rawset(L, -3);
    m._lua_settop(L, -2);
  }

  /** Bytes of memory the state holds now. */
  get memoryUsed(): number {
    return this.budget.memoryUsed;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.vm.unregisterState(this);
    this.vm.closeState(this.L, this.id);
  }
}

