import { basename } from 'node:path';
import { LUA_OK, type LuaVm } from './lua-vm.js';

export interface CompiledScript {
  path: string;
  /** Chunk name used in error messages: `@SMTPSVR.LUA` shows as `SMTPSVR.LUA:12:`. */
  chunkName: string;
  source: Buffer;
  /** Precompiled bytecode with debug info, loaded by every new state of this version. */
  bytecode: Buffer;
  version: number;
}

/**
 * Compiles a script's text once. Returns its bytecode, or the syntax error as
 * `FILE:LINE: message`.
 */
export function compileScript(vm: LuaVm, source: Buffer, path: string): Omit<CompiledScript, 'version'> | { error: string } {
  const m = vm.m;
  const chunkName = `@${basename(path)}`;
  const L = m._luaL_newstate();
  if (!L) return { error: `${path}: cannot create a Lua state` };
  const chunks: Buffer[] = [];
  const writer = m.addFunction((_L: number, p: number, sz: number): number => {
    chunks.push(Buffer.from(m.HEAPU8.subarray(p, p + sz)));
    return 0;
  }, 'iiiii');
  const buf = m._malloc(source.length + 1);
  try {
    m.HEAPU8.set(source, buf);
    const status = m._luaL_loadbufferx(L, buf, source.length, vm.cstr(chunkName), vm.cstr('t'));
    if (status !== LUA_OK) {
      const msg = vm.toStr(L, -1) ?? 'syntax error';
      // Lua says "SMTPSVR.LUA:3: ..."; report the path the administrator gave.
      return { error: msg.startsWith(`${basename(path)}:`) ? `${path}${msg.slice(basename(path).length)}` : `${path}: ${msg}` };
    }
    m._lua_dump(L, writer, 0, 0);
    return { path, chunkName, source, bytecode: Buffer.concat(chunks) };
  } finally {
    m._free(buf);
    m.removeFunction(writer);
    m._lua_close(L);
  }
}
