import { assemble, type AsmModule } from './wasm-asm.js';
import { LUA_STATE_HOOKCOUNT } from './count-hook-patch.js';

/**
 * string.find and string.match in wasm for their usual call in a line callback,
 * `line:match("[Vv][Ii][Aa]")`: two string arguments and a pattern the matcher has compiled to
 * a run of single-character classes (lua-pattern.ts, `compiled`). Such a call costs a Lua C
 * call, a lookup and the class scan (class-scan.ts), with no crossing into JS and back, which
 * cost more than the search itself on an 80-byte line. Every other call (an init or plain
 * argument, a number, an anchored or other pattern, one not yet compiled) goes to the JS
 * implementation as before, and gives the same results.
 *
 * The matcher keeps a directory of its compiled runs in the heap (QUICK_DIR): for each cache
 * slot the pattern's text (a copy), its length (-1 for a slot without a run), the class tables
 * and the run's length. The search is charged as the matcher charges it (a step per 8 bytes of
 * subject, and one), from Lua's own instruction count (lua_State.hookcount, as the count-hook
 * patch counts); a call that would use up the count takes the JS path, which charges the
 * budget itself. So this path is used only over the patched build, whose layout is known.
 */
export const QUICK_DIR = { entries: 16, entrySize: 16, text: 0, len: 4, block: 8, k: 12 } as const;
/** The directory's size in bytes, with 8 more for lua_tolstring's length out-parameter. */
export const QUICK_DIR_SIZE = QUICK_DIR.entries * QUICK_DIR.entrySize + 8;

const LUA_TSTRING = 4;

function body(find: boolean, dir: number): string {
  const end = dir + QUICK_DIR.entries * QUICK_DIR.entrySize;
  const lenp = end;
  const slow = `
    local.get $L
    call $slow
    return`;
  const push = find
    ? `
    local.get $L
    local.get $at
    local.get $s
    i32.sub
    i32.const 1
    i32.add
    i64.extend_i32_u
    call $pushinteger
    local.get $L
    local.get $at
    local.get $s
    i32.sub
    local.get $k
    i32.add
    i64.extend_i32_u
    call $pushinteger
    i32.const 2`
    : `
    local.get $L
    local.get $at
    local.get $k
    call $pushlstring
    drop
    i32.const 1`;
  return `
    ;; Only the plain call: two strings.
    local.get $L
    call $gettop
    i32.const 2
    i32.ne
    local.get $L
    i32.const 1
    call $type
    i32.const ${LUA_TSTRING}
    i32.ne
    i32.or
    local.get $L
    i32.const 2
    call $type
    i32.const ${LUA_TSTRING}
    i32.ne
    i32.or
    if${slow}
    end
    local.get $L
    i32.const 1
    i32.const ${lenp}
    call $tolstring
    local.set $s
    i32.const ${lenp}
    i32.load
    local.set $ls
    local.get $L
    i32.const 2
    i32.const ${lenp}
    call $tolstring
    local.set $p
    i32.const ${lenp}
    i32.load
    local.set $lp
    ;; The count left after the charge; an empty or anchored pattern is the JS path's.
    local.get $L
    i32.load offset=${LUA_STATE_HOOKCOUNT}
    local.get $ls
    i32.const 3
    i32.shr_u
    i32.const 1
    i32.add
    i32.sub
    local.tee $n
    i32.const 0
    i32.gt_s
    i32.eqz
    local.get $lp
    i32.eqz
    i32.or
    local.get $p
    i32.load8_u
    i32.const 94
    i32.eq
    i32.or
    if${slow}
    end
    i32.const ${dir}
    local.set $e
    block $found
      block $absent
        loop $entry
          local.get $e
          i32.const ${end}
          i32.ge_u
          br_if $absent
          local.get $e
          i32.load offset=${QUICK_DIR.len}
          local.get $lp
          i32.eq
          if
            local.get $e
            i32.load offset=${QUICK_DIR.text}
            local.set $t
            i32.const 0
            local.set $j
            block $differ
              ;; Four bytes at a time while four are left, then byte by byte.
              block $tail
                loop $word
                  local.get $j
                  i32.const 4
                  i32.add
                  local.get $lp
                  i32.gt_u
                  br_if $tail
                  local.get $t
                  local.get $j
                  i32.add
                  i32.load
                  local.get $p
                  local.get $j
                  i32.add
                  i32.load
                  i32.ne
                  br_if $differ
                  local.get $j
                  i32.const 4
                  i32.add
                  local.set $j
                  br $word
                end
              end
              loop $byte
                local.get $j
                local.get $lp
                i32.ge_u
                br_if $found
                local.get $t
                local.get $j
                i32.add
                i32.load8_u
                local.get $p
                local.get $j
                i32.add
                i32.load8_u
                i32.ne
                br_if $differ
                local.get $j
                i32.const 1
                i32.add
                local.set $j
                br $byte
              end
            end
          end
          local.get $e
          i32.const ${QUICK_DIR.entrySize}
          i32.add
          local.set $e
          br $entry
        end
      end${slow}
    end
    local.get $L
    local.get $n
    i32.store offset=${LUA_STATE_HOOKCOUNT}
    local.get $s
    local.get $s
    local.get $ls
    i32.add
    local.get $e
    i32.load offset=${QUICK_DIR.block}
    local.get $e
    i32.load offset=${QUICK_DIR.k}
    local.tee $k
    call $run
    local.tee $at
    i32.const -1
    i32.eq
    if
      local.get $L
      call $pushnil
      i32.const 1
      return
    end${push}`;
}

function module(find: boolean, dir: number): AsmModule {
  return {
    memory: ['e', 'm'],
    imports: [
      { name: 'gettop', from: ['e', 'gettop'], params: 1, result: true },
      { name: 'type', from: ['e', 'type'], params: 2, result: true },
      { name: 'tolstring', from: ['e', 'tolstring'], params: 3, result: true },
      { name: 'pushnil', from: ['e', 'pushnil'], params: 1, result: false },
      { name: 'pushlstring', from: ['e', 'pushlstring'], params: 3, result: true },
      { name: 'pushinteger', from: ['e', 'pushinteger'], params: ['i32', 'i64'], result: false },
      { name: 'run', from: ['e', 'run'], params: 4, result: true },
      { name: 'slow', from: ['e', 'slow'], params: 1, result: true },
    ],
    functions: [
      {
        name: 'quick',
        exported: true,
        params: ['L'],
        result: 'i32',
        locals: { s: 'i32', ls: 'i32', p: 'i32', lp: 'i32', n: 'i32', e: 'i32', t: 'i32', j: 'i32', k: 'i32', at: 'i32' },
        body: body(find, dir),
      },
    ],
  };
}

/**
 * The lua_CFunction for string.find (`find`) or string.match over the directory at `dir`,
 * falling back to `slow`; null when the module's exports are not at hand.
 */
export function quickFind(
  exports: WebAssembly.Exports | null,
  run: (s: number, end: number, t: number, k: number) => number,
  dir: number,
  find: boolean,
  slow: (L: number) => number,
): ((L: number) => number) | null {
  const e = exports as Record<string, WebAssembly.ImportValue> | null;
  const api = ['lua_gettop', 'lua_type', 'lua_tolstring', 'lua_pushnil', 'lua_pushlstring', 'lua_pushinteger'];
  if (!e || !(e.memory instanceof WebAssembly.Memory) || api.some((n) => typeof e[n] !== 'function')) return null;
  try {
    const instance = new WebAssembly.Instance(new WebAssembly.Module(assemble(module(find, dir))), {
      e: {
        m: e.memory,
        gettop: e.lua_gettop,
        type: e.lua_type,
        tolstring: e.lua_tolstring,
        pushnil: e.lua_pushnil,
        pushlstring: e.lua_pushlstring,
        pushinteger: e.lua_pushinteger,
        run,
        slow,
      },
    });
    return instance.exports.quick as (L: number) => number;
  } catch {
    return null;
  }
}
