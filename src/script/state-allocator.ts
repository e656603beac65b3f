import { assemble, type AsmModule } from './wasm-asm.js';

/**
 * The lua_Alloc of every script state: an arena per state, in wasm beside Lua's own module.
 *
 * A state lives for one SMTP connection and makes some thousand small objects on the way
 * (libraries, sandbox, script, helpers). Through the module's general malloc, each of them
 * cost a search of its free lists, and closing the state a walk over every object and a free
 * for each, scattered over a heap shared by all connections. Here a state takes 8 KB chunks
 * and carves blocks of up to SMALL_MAX bytes from them by size class (8-byte steps) with a
 * free list per class; larger blocks come from malloc with a link header. Closing the state
 * frees its chunks and large blocks, without lua_close: nothing of a state outlives it (no
 * finalizers run in a script state, see sandbox.ts, and nothing outside points in).
 *
 * The state's accounting shares the allocator's user data (int32 fields at these offsets):
 * bytes in use as Lua counts them, the cap, whether the cap binds now (only inside a script's
 * own call), and whether it was hit. While the cap binds, neither the bytes in use nor the
 * arena's chunks may pass it, so a script cannot grow the arena past its cap by freeing one
 * size class and filling another.
 */
export const UD = {
  used: 0,
  cap: 4,
  enforce: 8,
  hit: 12,
  /** The free part of the current chunk: [cur, end). */
  cur: 16,
  end: 20,
  /** Singly linked through each chunk's first word. */
  chunks: 24,
  /** Doubly linked through each large block's header (prev, next). */
  large: 28,
  /** Bytes of chunks held. */
  footprint: 32,
  /** Free list heads: class c (blocks of 8c bytes, 1 <= c <= 64) at FREE + 4c. */
  FREE: 32,
  /**
   * The state's region, when it has one: chunks and large blocks are cut from [rcur, rend) in
   * turn while they fit, and never given to free (see take and give). The host seals it
   * (rend = rcur) to take a snapshot of a state that lives there whole; restoring one frees
   * whatever came from malloc since and writes the region and this user data back.
   */
  rstart: 32 + 4 * 65,
  rend: 36 + 4 * 65,
  rcur: 40 + 4 * 65,
  /** Set when a block came from malloc while the region was still open. */
  spilled: 44 + 4 * 65,
  size: 48 + 4 * 65,
} as const;

const SMALL_MAX = 512;
const CHUNK = 8192;
/** Chunk and large-block headers keep blocks 8-byte aligned, as Lua wants. */
const HEADER = 8;

const CAP_CHECK = `
    ;; d > 0 and used + d > cap, while the cap binds: refuse, and say so
    local.get $ud
    i32.load offset=${UD.enforce}
    if
      local.get $d
      i64.const 0
      i64.gt_s
      if
        local.get $ud
        i32.load offset=${UD.used}
        i64.extend_i32_s
        local.get $d
        i64.add
        local.get $ud
        i32.load offset=${UD.cap}
        i64.extend_i32_s
        i64.gt_s
        if
          local.get $ud
          i32.const 1
          i32.store offset=${UD.hit}
          i32.const 0
          return
        end
      end
    end`;

const ADD_D_TO_USED = `
    local.get $ud
    local.get $ud
    i32.load offset=${UD.used}
    local.get $d
    i32.wrap_i64
    i32.add
    i32.store offset=${UD.used}`;

/** Pushes $block on the free list of class (size + 7) >> 3 (uses $slot). */
const pushFree = (block: string, size: string): string => `
    local.get ${block}
    local.get ${size}
    i32.const 7
    i32.add
    i32.const 3
    i32.shr_u
    i32.const 2
    i32.shl
    local.get $ud
    i32.add
    local.tee $slot
    i32.load offset=${UD.FREE}
    i32.store offset=0
    local.get $slot
    local.get ${block}
    i32.store offset=${UD.FREE}`;

/**
 * Frees every block of the list whose head is at offset `head` of the user data, each block
 * linked to the next by its word at offset `next` (uses $k and $n).
 */
const freeEach = (head: number, next: number): string => `
    local.get $ud
    i32.load offset=${head}
    local.set $k
    block $done
      loop $next
        local.get $k
        i32.eqz
        br_if $done
        local.get $k
        i32.load offset=${next}
        local.set $n
        local.get $ud
        local.get $k
        call $give
        local.get $n
        local.set $k
        br $next
      end
    end`;

const MODULE: AsmModule = {
  memory: ['e', 'm'],
  imports: [
    { name: 'malloc', from: ['e', 'malloc'], params: 1, result: true },
    { name: 'free', from: ['e', 'free'], params: 1, result: false },
  ],
  functions: [
    {
      // lua_Alloc(ud, ptr, osize, nsize). With a null ptr, osize is a type tag (manual §4.6).
      name: 'alloc',
      exported: true,
      params: ['ud', 'ptr', 'osize', 'nsize'],
      result: 'i32',
      locals: { d: 'i64', p: 'i32' },
      body: `
    local.get $nsize
    i32.eqz
    if
      local.get $ptr
      if
        local.get $ud
        local.get $ud
        i32.load offset=${UD.used}
        local.get $osize
        i32.sub
        i32.store offset=${UD.used}
        local.get $ud
        local.get $ptr
        local.get $osize
        call $release
      end
      i32.const 0
      return
    end
    ;; d = nsize - (ptr ? osize : 0)
    local.get $nsize
    i64.extend_i32_u
    local.get $osize
    i64.extend_i32_u
    i64.const 0
    local.get $ptr
    select
    i64.sub
    local.set $d
    ${CAP_CHECK}
    ;; a block that keeps its size class stays where it is
    local.get $ptr
    if
      local.get $osize
      i32.const ${SMALL_MAX}
      i32.le_u
      local.get $nsize
      i32.const ${SMALL_MAX}
      i32.le_u
      i32.and
      if
        local.get $osize
        i32.const 7
        i32.add
        i32.const 3
        i32.shr_u
        local.get $nsize
        i32.const 7
        i32.add
        i32.const 3
        i32.shr_u
        i32.eq
        if
          ${ADD_D_TO_USED}
          local.get $ptr
          return
        end
      end
    end
    local.get $ud
    local.get $nsize
    call $get
    local.tee $p
    i32.eqz
    if
      ;; Lua takes a shrink as never failing: the old block serves, and is later freed as
      ;; the smaller size (a block larger than its class is harmless on a free list).
      local.get $ptr
      i32.const 0
      i32.ne
      local.get $d
      i64.const 0
      i64.gt_s
      i32.eqz
      i32.and
      if
        ${ADD_D_TO_USED}
        local.get $ptr
        return
      end
      i32.const 0
      return
    end
    local.get $ptr
    if
      local.get $p
      local.get $ptr
      local.get $osize
      local.get $nsize
      local.get $osize
      local.get $nsize
      i32.lt_u
      select
      memory.copy
      local.get $ud
      local.get $ptr
      local.get $osize
      call $release
    end
    ${ADD_D_TO_USED}
    local.get $p`,
    },
    {
      // A block of n bytes (n > 0): from its class's free list, the current chunk or a new
      // chunk; or a large block. 0 when malloc fails or a new chunk would pass the cap.
      name: 'get',
      params: ['ud', 'n'],
      result: 'i32',
      locals: { c: 'i32', p: 'i32', k: 'i32', slot: 'i32' },
      body: `
    local.get $n
    i32.const ${SMALL_MAX}
    i32.gt_u
    if
      local.get $ud
      local.get $n
      i32.const ${HEADER}
      i32.add
      call $take
      local.tee $p
      i32.eqz
      if
        i32.const 0
        return
      end
      ;; first on the list of large blocks: prev = 0, next = the old first
      local.get $p
      i32.const 0
      i32.store offset=0
      local.get $p
      local.get $ud
      i32.load offset=${UD.large}
      local.tee $k
      i32.store offset=4
      local.get $k
      if
        local.get $k
        local.get $p
        i32.store offset=0
      end
      local.get $ud
      local.get $p
      i32.store offset=${UD.large}
      local.get $p
      i32.const ${HEADER}
      i32.add
      return
    end
    ;; the class's free list (its head at FREE + 4c)
    local.get $n
    i32.const 7
    i32.add
    i32.const 3
    i32.shr_u
    local.tee $c
    i32.const 2
    i32.shl
    local.get $ud
    i32.add
    local.tee $slot
    i32.load offset=${UD.FREE}
    local.tee $p
    if
      local.get $slot
      local.get $p
      i32.load offset=0
      i32.store offset=${UD.FREE}
      local.get $p
      return
    end
    ;; else carve 8c bytes from the current chunk
    local.get $c
    i32.const 3
    i32.shl
    local.set $c
    local.get $ud
    i32.load offset=${UD.cur}
    local.tee $p
    local.get $c
    i32.add
    local.get $ud
    i32.load offset=${UD.end}
    i32.gt_u
    if
      ;; what is left of the chunk (a multiple of 8, under 8c) goes to its own class
      local.get $ud
      i32.load offset=${UD.end}
      local.get $p
      i32.sub
      local.tee $k
      i32.const 8
      i32.ge_u
      if
        ${pushFree('$p', '$k')}
      end
      local.get $ud
      i32.load offset=${UD.enforce}
      if
        local.get $ud
        i32.load offset=${UD.footprint}
        i32.const ${CHUNK}
        i32.add
        local.get $ud
        i32.load offset=${UD.cap}
        i32.gt_u
        if
          local.get $ud
          i32.const 1
          i32.store offset=${UD.hit}
          i32.const 0
          return
        end
      end
      local.get $ud
      i32.const ${CHUNK}
      call $take
      local.tee $k
      i32.eqz
      if
        i32.const 0
        return
      end
      local.get $k
      local.get $ud
      i32.load offset=${UD.chunks}
      i32.store offset=0
      local.get $ud
      local.get $k
      i32.store offset=${UD.chunks}
      local.get $ud
      local.get $ud
      i32.load offset=${UD.footprint}
      i32.const ${CHUNK}
      i32.add
      i32.store offset=${UD.footprint}
      local.get $ud
      local.get $k
      i32.const ${CHUNK}
      i32.add
      i32.store offset=${UD.end}
      local.get $k
      i32.const ${HEADER}
      i32.add
      local.set $p
    end
    local.get $ud
    local.get $p
    local.get $c
    i32.add
    i32.store offset=${UD.cur}
    local.get $p`,
    },
    {
      // Gives back a block of osize bytes: to its class's free list, or a large block to malloc.
      name: 'release',
      params: ['ud', 'ptr', 'osize'],
      locals: { a: 'i32', b: 'i32', slot: 'i32' },
      body: `
    local.get $osize
    i32.const ${SMALL_MAX}
    i32.gt_u
    if
      local.get $ptr
      i32.const ${HEADER}
      i32.sub
      local.tee $ptr
      i32.load offset=0
      local.set $a
      local.get $ptr
      i32.load offset=4
      local.set $b
      local.get $a
      if
        local.get $a
        local.get $b
        i32.store offset=4
      else
        local.get $ud
        local.get $b
        i32.store offset=${UD.large}
      end
      local.get $b
      if
        local.get $b
        local.get $a
        i32.store offset=0
      end
      local.get $ud
      local.get $ptr
      call $give
      return
    end
    ${pushFree('$ptr', '$osize')}`,
    },
    {
      // n bytes for a chunk or a large block: the next ones of the open region, else malloc's.
      name: 'take',
      params: ['ud', 'n'],
      result: 'i32',
      locals: { p: 'i32', q: 'i32' },
      body: `
    local.get $ud
    i32.load offset=${UD.rcur}
    local.tee $p
    local.get $n
    i32.const 7
    i32.add
    i32.const 3
    i32.shr_u
    i32.const 3
    i32.shl
    i32.add
    local.tee $q
    local.get $ud
    i32.load offset=${UD.rend}
    i32.le_u
    local.get $p
    i32.const 0
    i32.ne
    i32.and
    if
      local.get $ud
      local.get $q
      i32.store offset=${UD.rcur}
      local.get $p
      return
    end
    local.get $ud
    i32.load offset=${UD.rend}
    local.get $ud
    i32.load offset=${UD.rcur}
    i32.ne
    if
      local.get $ud
      i32.const 1
      i32.store offset=${UD.spilled}
    end
    local.get $n
    call $malloc`,
    },
    {
      // Gives back a chunk or large block: to free, unless it lies in the region.
      name: 'give',
      params: ['ud', 'p'],
      body: `
    local.get $p
    local.get $ud
    i32.load offset=${UD.rstart}
    i32.ge_u
    local.get $p
    local.get $ud
    i32.load offset=${UD.rend}
    i32.lt_u
    i32.and
    if
      return
    end
    local.get $p
    call $free`,
    },
    {
      // Frees everything the state holds (its end, in place of lua_close).
      name: 'drop',
      exported: true,
      params: ['ud'],
      locals: { k: 'i32', n: 'i32' },
      body: `${freeEach(UD.chunks, 0)}
    ${freeEach(UD.large, 4)}`,
    },
  ],
};

export interface StateAllocator {
  /** The lua_Alloc, a wasm function for the module's function table. */
  alloc: (ud: number, ptr: number, osize: number, nsize: number) => number;
  /** Frees all memory of the state whose user data is `ud`. */
  drop: (ud: number) => void;
}

/** The allocator over the Lua module's memory, malloc and free; null when they are not at hand. */
export function stateAllocator(exports: WebAssembly.Exports | null): StateAllocator | null {
  if (!exports || !(exports.memory instanceof WebAssembly.Memory) || typeof exports.malloc !== 'function' || typeof exports.free !== 'function') return null;
  try {
    const instance = new WebAssembly.Instance(new WebAssembly.Module(assemble(MODULE)), { e: { m: exports.memory, malloc: exports.malloc, free: exports.free } });
    return instance.exports as unknown as StateAllocator;
  } catch {
    return null;
  }
}
