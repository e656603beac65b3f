import { assemble, type AsmModule } from './wasm-asm.js';

/**
 * The pattern matcher's search for where a pattern can start (lua-pattern.ts, `skipTo`), in
 * wasm over the Lua module's memory: a subject string is matched in place in the heap, and a
 * byte loop there runs several times faster than the same loop in JS over the heap's view
 * (about 50 against 115 to 240 ns for an 80-byte line). The pattern's first character class
 * is a 256-byte membership table in the heap.
 */
const MODULE: AsmModule = {
  memory: ['e', 'm'],
  imports: [],
  functions: [
    {
      // The first index in [s, end) whose byte is in the table at t, or end.
      name: 'scan',
      exported: true,
      params: ['s', 'end', 't'],
      result: 'i32',
      body: `
    block $found
      loop $next
        local.get $s
        local.get $end
        i32.ge_u
        br_if $found
        local.get $t
        local.get $s
        i32.load8_u
        i32.add
        i32.load8_u
        br_if $found
        local.get $s
        i32.const 1
        i32.add
        local.set $s
        br $next
      end
    end
    local.get $s`,
    },
  ],
};

/** What the matcher needs to scan a subject in the heap natively. */
export interface NativeScan {
  /** The heap's view as it is now: only a subject in it is scanned natively. */
  heap(): Uint8Array;
  /** The address of the 256-byte table of cache slot `i`. */
  slot(i: number): number;
  /** The first index in [s, end) whose byte the table at `table` holds, or `end`. */
  scan(s: number, end: number, table: number): number;
}

/** The scan over `memory`, or null when it cannot be made. */
export function classScan(memory: unknown): ((s: number, end: number, table: number) => number) | null {
  if (!(memory instanceof WebAssembly.Memory)) return null;
  try {
    const instance = new WebAssembly.Instance(new WebAssembly.Module(assemble(MODULE)), { e: { m: memory } });
    return instance.exports.scan as (s: number, end: number, table: number) => number;
  } catch {
    return null;
  }
}
