import { assemble, type AsmModule } from './wasm-asm.js';

/*
 * The pattern matcher's searches (lua-pattern.ts) in wasm over the Lua module's memory: a
 * subject string is matched in place in the heap, and a byte loop there runs several times
 * faster than the same loop in JS over the heap's view (about 50 against 115 to 240 ns for an
 * 80-byte line). A class is a 256-byte membership table in the heap; a run of k classes is k
 * tables one after another, after a header (RUN_HEADER). One function serves both searches:
 * where a pattern can start is a run of one class.
 */

/**
 * Before the tables, RUN_HEADER bytes: how many bytes the first class holds when they are four
 * or fewer (else 0), then those bytes (the first repeated to fill four). Such a class, the
 * usual `[Vv]`, is looked for 16 bytes at a time with SIMD compares.
 */
export const RUN_HEADER = 16;

/** The header of a run whose first class is `first` (a 256-byte membership table). */
export function runHeader(first: Uint8Array): Uint8Array {
  const members: number[] = [];
  for (let c = 0; c < 256 && members.length <= 4; c++) if (first[c]) members.push(c);
  const h = new Uint8Array(RUN_HEADER);
  if (members.length === 0 || members.length > 4) return h;
  h[0] = members.length;
  for (let i = 0; i < 4; i++) h[4 + i] = members[Math.min(i, members.length - 1)];
  return h;
}

/** The first class's bytes, each in all 16 lanes of $v0..$v3, from the header at $h. */
const SPLATS = [0, 1, 2, 3].map((i) => `      local.get $h\n      i32.load8_u offset=${4 + i}\n      i8x16.splat\n      local.set $v${i}`).join('\n');
/** Lanes of $x equal to any of them. */
const MATCHES = [0, 1, 2, 3].map((i) => `          local.get $x\n          local.get $v${i}\n          i8x16.eq${i ? '\n          v128.or' : ''}`).join('\n');

const MODULE: AsmModule = {
  memory: ['e', 'm'],
  imports: [],
  functions: [
    {
      // 1 when the tables from the second one on (k - 1 of them, from t + 256) hold the bytes
      // from i + 1 on, else 0.
      name: 'rest',
      params: ['i', 't', 'k'],
      result: 'i32',
      locals: { j: 'i32', tp: 'i32' },
      body: `
    i32.const 1
    local.set $j
    local.get $t
    i32.const 256
    i32.add
    local.set $tp
    loop $class
      local.get $j
      local.get $k
      i32.ge_u
      if
        i32.const 1
        return
      end
      local.get $tp
      local.get $i
      local.get $j
      i32.add
      i32.load8_u
      i32.add
      i32.load8_u
      i32.eqz
      if
        i32.const 0
        return
      end
      local.get $j
      i32.const 1
      i32.add
      local.set $j
      local.get $tp
      i32.const 256
      i32.add
      local.set $tp
      br $class
    end
    i32.const 0`,
    },
    {
      // The first index i in [s, end - k] where the j-th table from t holds the byte at i + j
      // for every j below k, or -1. A first class of a few bytes is looked for 16 bytes at a
      // time while 16 are left; then positions the first table rejects are passed over by a
      // tight loop. The other tables are checked where the first holds.
      name: 'run',
      exported: true,
      params: ['s', 'end', 't', 'k'],
      result: 'i32',
      locals: { last: 'i32', h: 'i32', mask: 'i32', i: 'i32', x: 'v128', v0: 'v128', v1: 'v128', v2: 'v128', v3: 'v128' },
      body: `
    local.get $end
    local.get $k
    i32.sub
    local.set $last
    local.get $t
    i32.const ${RUN_HEADER}
    i32.sub
    local.tee $h
    i32.load
    if
${SPLATS}
      block $tail
        loop $wide
          local.get $s
          i32.const 16
          i32.add
          local.get $end
          i32.gt_u
          br_if $tail
          local.get $s
          v128.load
          local.set $x
${MATCHES}
          i8x16.bitmask
          local.set $mask
          block $chunk
            loop $candidate
              local.get $mask
              i32.eqz
              br_if $chunk
              local.get $s
              local.get $mask
              i32.ctz
              i32.add
              local.tee $i
              local.get $last
              i32.gt_s
              if
                i32.const -1
                return
              end
              local.get $i
              local.get $t
              local.get $k
              call $rest
              if
                local.get $i
                return
              end
              local.get $mask
              local.get $mask
              i32.const 1
              i32.sub
              i32.and
              local.set $mask
              br $candidate
            end
          end
          local.get $s
          i32.const 16
          i32.add
          local.set $s
          br $wide
        end
      end
    end
    block $none
      loop $next
        local.get $s
        local.get $last
        i32.gt_s
        br_if $none
        local.get $t
        local.get $s
        i32.load8_u
        i32.add
        i32.load8_u
        if
          local.get $s
          local.get $t
          local.get $k
          call $rest
          if
            local.get $s
            return
          end
        end
        local.get $s
        i32.const 1
        i32.add
        local.set $s
        br $next
      end
    end
    i32.const -1`,
    },
  ],
};

/** What the matcher needs to search a subject in the heap natively. */
export interface NativeScan {
  /** The heap's view as it is now: only a subject in it is searched natively. */
  heap(): Uint8Array;
  /** Heap memory for tables (0 when there is none), and its release. */
  alloc(size: number): number;
  free(ptr: number): void;
  /**
   * The first index where the run of `k` tables at `tables` matches, within [s, end), or -1;
   * the tables follow their header (RUN_HEADER bytes before `tables`).
   */
  run(s: number, end: number, tables: number, k: number): number;
}

/** The search over `memory`, or null when it cannot be made. */
export function classScan(memory: unknown): NativeScan['run'] | null {
  if (!(memory instanceof WebAssembly.Memory)) return null;
  try {
    const instance = new WebAssembly.Instance(new WebAssembly.Module(assemble(MODULE)), { e: { m: memory } });
    return instance.exports.run as NativeScan['run'];
  } catch {
    return null;
  }
}
