import { assemble, type AsmModule } from './wasm-asm.js';

/**
 * The pattern matcher's searches (lua-pattern.ts) in wasm over the Lua module's memory: a
 * subject string is matched in place in the heap, and a byte loop there runs several times
 * faster than the same loop in JS over the heap's view (about 50 against 115 to 240 ns for an
 * 80-byte line). A class is a 256-byte membership table in the heap; a run of k classes is k
 * tables one after another. One function serves both searches: where a pattern can start is a
 * run of one class.
 */
const MODULE: AsmModule = {
  memory: ['e', 'm'],
  imports: [],
  functions: [
    {
      // The first index i in [s, end - k] where the j-th table from t holds the byte at i + j
      // for every j below k, or -1. Positions the first table rejects are passed over by a
      // tight loop; the other tables are checked where it holds.
      name: 'run',
      exported: true,
      params: ['s', 'end', 't', 'k'],
      result: 'i32',
      locals: { last: 'i32', j: 'i32', tp: 'i32' },
      body: `
    local.get $end
    local.get $k
    i32.sub
    local.set $last
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
          i32.const 1
          local.set $j
          local.get $t
          i32.const 256
          i32.add
          local.set $tp
          block $miss
            loop $class
              local.get $j
              local.get $k
              i32.ge_u
              if
                local.get $s
                return
              end
              local.get $tp
              local.get $s
              local.get $j
              i32.add
              i32.load8_u
              i32.add
              i32.load8_u
              i32.eqz
              br_if $miss
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
  /** The first index where the run of `k` tables at `tables` matches, within [s, end), or -1. */
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
