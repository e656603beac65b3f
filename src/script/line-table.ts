import type { LuaModule } from './lua-vm.js';
import { assemble, type AsmModule } from './wasm-asm.js';

/**
 * The C function that turns a block of message lines into a Lua table for the line callbacks
 * (smtpsvr-hooks.ts, `lines`): the host stages the bytes in the wasm heap once per batch, and
 * the lines become Lua strings without a call from JS for each. A 1 MB message has some 13,000
 * lines; from JS each cost a view, a push through the C API and a store.
 *
 * The staging area is described at `desc`: the block's address, its length, and how many lines
 * it holds (a size hint for the table). Every line ends in LF, which is cut off with a CR
 * before it.
 */
export const STAGE = { ptr: 0, len: 4, count: 8, size: 12 } as const;

function module(desc: number): AsmModule {
  return {
    memory: ['e', 'm'],
    imports: [
      { name: 'createtable', from: ['e', 'createtable'], params: 3, result: false },
      { name: 'pushlstring', from: ['e', 'pushlstring'], params: 3, result: true },
      { name: 'rawseti', from: ['e', 'rawseti'], params: ['i32', 'i32', 'i64'], result: false },
    ],
    functions: [
      {
        name: 'lines',
        exported: true,
        params: ['L'],
        result: 'i32',
        locals: { q: 'i32', end: 'i32', start: 'i32', e: 'i32', n: 'i32', mask: 'i32', lf: 'v128' },
        body: `
    local.get $L
    i32.const ${desc}
    i32.load offset=${STAGE.count}
    i32.const 0
    call $createtable
    i32.const ${desc}
    i32.load offset=${STAGE.ptr}
    local.tee $q
    local.set $start
    local.get $q
    i32.const ${desc}
    i32.load offset=${STAGE.len}
    i32.add
    local.set $end
    i32.const 10
    i8x16.splat
    local.set $lf
    block $done
      loop $scan
        ;; To the next LF 16 bytes at a time while 16 are left, then byte by byte.
        block $byte
          loop $wide
            local.get $q
            i32.const 16
            i32.add
            local.get $end
            i32.gt_u
            br_if $byte
            local.get $q
            v128.load
            local.get $lf
            i8x16.eq
            i8x16.bitmask
            local.tee $mask
            if
              local.get $q
              local.get $mask
              i32.ctz
              i32.add
              local.set $q
              br $byte
            end
            local.get $q
            i32.const 16
            i32.add
            local.set $q
            br $wide
          end
        end
        local.get $q
        local.get $end
        i32.ge_u
        br_if $done
        local.get $q
        i32.load8_u
        i32.const 10
        i32.eq
        if
          ;; The line, without its CR.
          local.get $q
          local.set $e
          local.get $e
          local.get $start
          i32.gt_u
          if
            local.get $e
            i32.const 1
            i32.sub
            i32.load8_u
            i32.const 13
            i32.eq
            if
              local.get $e
              i32.const 1
              i32.sub
              local.set $e
            end
          end
          local.get $L
          local.get $start
          local.get $e
          local.get $start
          i32.sub
          call $pushlstring
          drop
          local.get $n
          i32.const 1
          i32.add
          local.set $n
          local.get $L
          i32.const -2
          local.get $n
          i64.extend_i32_u
          call $rawseti
          local.get $q
          i32.const 1
          i32.add
          local.set $start
        end
        local.get $q
        i32.const 1
        i32.add
        local.set $q
        br $scan
      end
    end
    i32.const 1`,
      },
    ],
  };
}

/**
 * The lua_CFunction making the table of the lines staged at `desc`: the assembled one over the
 * module's raw exports, or the same in JS through the C API when they are not at hand.
 */
export function lineTableFunction(exports: WebAssembly.Exports | null, m: LuaModule, desc: number): (L: number) => number {
  const e = exports as Record<string, unknown> | null;
  if (e && e.memory instanceof WebAssembly.Memory && typeof e.lua_createtable === 'function' && typeof e.lua_pushlstring === 'function' && typeof e.lua_rawseti === 'function') {
    try {
      const instance = new WebAssembly.Instance(new WebAssembly.Module(assemble(module(desc))), {
        e: { m: e.memory, createtable: e.lua_createtable, pushlstring: e.lua_pushlstring, rawseti: e.lua_rawseti },
      });
      return instance.exports.lines as (L: number) => number;
    } catch {
      // fall through to the JS version
    }
  }
  return (L: number): number => {
    const h32 = m.HEAPU32;
    const ptr = h32[(desc + STAGE.ptr) >> 2];
    const end = ptr + h32[(desc + STAGE.len) >> 2];
    m._lua_createtable(L, h32[(desc + STAGE.count) >> 2], 0);
    let n = 0;
    for (let start = ptr; start < end; ) {
      const lf = m.HEAPU8.indexOf(10, start);
      if (lf < 0 || lf >= end) break;
      const e = lf > start && m.HEAPU8[lf - 1] === 13 ? lf - 1 : lf;
      m._lua_pushlstring(L, start, e - start);
      m._lua_rawseti(L, -2, BigInt(++n));
      start = lf + 1;
    }
    return 1;
  };
}
