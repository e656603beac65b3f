import { basename } from 'node:path';
import { LUA_OK, type LuaVm } from './lua-vm.js';
import { globalUse, type GlobalUse } from './global-use.js';

export interface CompiledScript {
  path: string;
  /** Chunk name used in error messages: `@SMTPSVR.LUA` shows as `SMTPSVR.LUA:12:`. */
  chunkName: string;
  source: Buffer;
  /** Precompiled bytecode with debug info, loaded by every new state of this version. */
  bytecode: Buffer;
  /** The globals its code names (see global-use.ts); null when the bytecode could not be read. */
  globals: GlobalUse | null;
  version: number;
}

/**
 * Compiles a chunk to bytecode (with debug info) in a scratch state; the Lua error text when
 * it does not compile.
 */
export function compileChunk(vm: LuaVm, source: Buffer, chunkName: string, strip = false): { bytecode: Buffer } | { error: string } {
  const m = vm.m;
  const L = m._luaL_newstate();
  if (!L) return { error: 'cannot create a Lua state' };
  const chunks: Buffer[] = [];
  const writer = m.addFunction((_L: number, p: number, sz: number): number => {
    chunks.push(Buffer.from(m.HEAPU8.subarray(p, p + sz)));
    return 0;
  }, 'iiiii');
  const buf = m._malloc(source.length + 1);
  try {
    m.HEAPU8.set(source, buf);
    const status = m._luaL_loadbufferx(L, buf, source.length, vm.cstr(chunkName), vm.cstr('t'));
    if (status !== LUA_OK) return { error: vm.toStr(L, -1) ?? 'syntax error' };
    m._lua_dump(L, writer, 0, strip ? 1 : 0);
    return { bytecode: Buffer.concat(chunks) };
  } finally {
    m._free(buf);
    m.removeFunction(writer);
    m._lua_close(L);
  }
}

const internal = new WeakMap<LuaVm, Map<string, Buffer>>();

/** Bytecode of one of our own chunks (sandbox, trampolines), compiled once per VM. */
export function internalChunk(vm: LuaVm, code: string, chunkName: string): Buffer {
  let cache = internal.get(vm);
  if (!cache) internal.set(vm, (cache = new Map()));
  let bc = cache.get(code);
  if (!bc) {
    const r = compileChunk(vm, Buffer.from(code), chunkName, true);
    if ('error' in r) throw new Error(`internal Lua chunk ${chunkName}: ${r.error}`);
    bc = r.bytecode;
    cache.set(code, bc);
  }
  return bc;
}

/**
 * Compiles a script's text once. Returns its bytecode, or the syntax error as
 * `FILE:LINE: message`.
 */
export function compileScript(vm: LuaVm, source: Buffer, path: string): Omit<CompiledScript, 'version'> | { error: string } {
  const chunkName = `@${basename(path)}`;
  const r = compileChunk(vm, source, chunkName);
  if ('error' in r) {
    const msg = r.error;
    // Lua says "SMTPSVR.LUA:3: ..."; report the path the administrator gave.
    return { error: msg.startsWith(`${basename(path)}:`) ? `${path}${msg.slice(basename(path).length)}` : `${path}: ${msg}` };
  }
  return { path, chunkName, source, bytecode: r.bytecode, globals: globalUse(r.bytecode) };
}
