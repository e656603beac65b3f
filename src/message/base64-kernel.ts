import { name, section, sleb, uleb, vec } from '../util/wasm-encoding.js';

/**
 * A WebAssembly SIMD kernel that counts base64 alphabet characters 16 bytes at a time, for the
 * parts whose decoded bytes nobody reads (only their decoded size is reported). A JavaScript
 * byte loop costs a few nanoseconds a byte; with attachments of megabytes that was the largest
 * cost of the analysis. The kernel only counts blocks made of alphabet characters and
 * whitespace: it stops at the first block holding anything else ("=", invalid bytes), which
 * Base64Decoder then decodes with its exact scalar loop, so sizes and defects stay the same.
 *
 * A byte is classified by its two nibbles (the technique of SIMD base64 decoders): it is
 * neither alphabet nor whitespace exactly when LO[low nibble] & HI[high nibble] is not 0,
 * each bit of the tables standing for a group of high nibbles and the low nibbles that are
 * not allowed with them (see CLASSES). Once a block holds nothing else, its whitespace
 * (TAB, LF, CR, SP) are its bytes below 33, and the rest are alphabet characters.
 *
 * The module is assembled below, instruction by instruction, from this function (WebAssembly
 * text format; binary format: WebAssembly Core Specification 2.0, §5; SIMD opcodes after the
 * 0xFD prefix):
 *
 *   (module
 *     (memory (export "mem") 1)                    ;; one 64 KiB page: the window
 *     (global $count (export "count") (mut i32) (i32.const 0))
 *     ;; Counts alphabet characters from $p, in whole blocks of 16 bytes before $end, up to the
 *     ;; first block holding anything but alphabet and whitespace; returns the offset of the
 *     ;; first block not counted and leaves the count in $count.
 *     (func (export "scan") (param $p i32) (param $end i32) (result i32)
 *       (local $v0 v128) (local $v1 v128) (local $v2 v128) (local $v3 v128) (local $n i32)
 *       ;; 64 bytes a step while all of them are alphabet or whitespace
 *       (block $slow (loop $fast
 *         (br_if $slow (i32.gt_u (i32.add (local.get $p) (i32.const 64)) (local.get $end)))
 *         (local.set $v0 (v128.load offset=0 (local.get $p)))   ;; $v1..$v3: offsets 16, 32, 48
 *         (br_if $slow (v128.any_true (v128.or (v128.or (bad $v0) (bad $v1)) (v128.or (bad $v2) (bad $v3)))))
 *         (local.set $n (i32.add (local.get $n) (i32.sub (i32.const 64) (i32.add (i32.add (ws $v0) (ws $v1)) (i32.add (ws $v2) (ws $v3))))))
 *         (local.set $p (i32.add (local.get $p) (i32.const 64)))
 *         (br $fast)))
 *       ;; then 16 bytes a step, up to the block that holds something else
 *       (block $done (loop $next
 *         (br_if $done (i32.gt_u (i32.add (local.get $p) (i32.const 16)) (local.get $end)))
 *         (local.set $v0 (v128.load (local.get $p)))
 *         (br_if $done (v128.any_true (bad $v0)))
 *         (local.set $n (i32.add (local.get $n) (i32.sub (i32.const 16) (ws $v0))))
 *         (local.set $p (i32.add (local.get $p) (i32.const 16)))
 *         (br $next)))
 *       (global.set $count (local.get $n))
 *       (local.get $p)))
 *
 * where (bad $v) = (v128.and (i8x16.swizzle (v128.const LO) (v128.and (local.get $v) (splat 15)))
 *                            (i8x16.swizzle (v128.const HI) (i8x16.shr_u (local.get $v) (i32.const 4))))
 *       (ws $v)  = (i32.popcnt (i8x16.bitmask (i8x16.lt_u (local.get $v) (splat 33))))
 *       (splat k) = (i8x16.splat (i32.const k)).
 */

/**
 * The byte classes: each a set of high nibbles and the low nibbles allowed with them. A byte
 * is alphabet or whitespace when its low nibble is allowed in the class of its high nibble.
 */
const CLASSES: { high: number[]; allowed: (lo: number) => boolean }[] = [
  { high: [0x0], allowed: (l) => l === 0x9 || l === 0xa || l === 0xd }, // TAB LF CR
  { high: [0x2], allowed: (l) => l === 0x0 || l === 0xb || l === 0xf }, // SP + /
  { high: [0x3], allowed: (l) => l <= 0x9 }, // 0-9
  { high: [0x4, 0x6], allowed: (l) => l >= 0x1 }, // A-O a-o
  { high: [0x5, 0x7], allowed: (l) => l <= 0xa }, // P-Z p-z
  { high: [0x1, 0x8, 0x9, 0xa, 0xb, 0xc, 0xd, 0xe, 0xf], allowed: () => false },
];

/** LO[low nibble]: the classes that do not allow it; HI[high nibble]: its class. */
export function nibbleTables(): { lo: number[]; hi: number[] } {
  const lo = new Array<number>(16).fill(0);
  const hi = new Array<number>(16).fill(0);
  CLASSES.forEach((c, bit) => {
    for (const h of c.high) hi[h] |= 1 << bit;
    for (let l = 0; l < 16; l++) if (!c.allowed(l)) lo[l] |= 1 << bit;
  });
  return { lo, hi };
}

// Value types and section ids (binary format §5.3, §5.5).
const I32 = 0x7f;
const V128 = 0x7b;
const FUNC_TYPE = 0x60;
const SECTION = { type: 1, function: 3, memory: 5, global: 6, export: 7, code: 10 } as const;
const EXPORT_KIND = { func: 0, memory: 2, global: 3 } as const;

// Instructions (§5.4): control, variables, numeric.
const BLOCK = 0x02;
const LOOP = 0x03;
const VOID = 0x40;
const END = 0x0b;
const BR = 0x0c;
const BR_IF = 0x0d;
const LOCAL_GET = 0x20;
const LOCAL_SET = 0x21;
const GLOBAL_SET = 0x24;
const I32_CONST = 0x41;
const I32_GT_U = 0x4b;
const I32_POPCNT = 0x69;
const I32_ADD = 0x6a;
const I32_SUB = 0x6b;

// SIMD instructions: 0xFD then the opcode as an unsigned LEB128 (all below 0x80 here).
const SIMD = 0xfd;
const V128_LOAD = 0x00;
const V128_CONST = 0x0c;
const I8X16_SWIZZLE = 0x0e;
const I8X16_SPLAT = 0x0f;
const I8X16_LT_U = 0x26;
const V128_AND = 0x4e;
const V128_OR = 0x50;
const V128_ANY_TRUE = 0x53;
const I8X16_BITMASK = 0x64;
const I8X16_SHR_U = 0x6d;

/** The bytes of the module described above. */
export function base64KernelModule(): Uint8Array<ArrayBuffer> {
  const { lo, hi } = nibbleTables();
  // Locals: params $p = 0, $end = 1; then $v0..$v3 = 2..5 (v128), $n = 6 (i32).
  const P = 0, END_ = 1, V0 = 2, N = 6;
  const get = (i: number): number[] => [LOCAL_GET, i];
  const set = (i: number): number[] => [LOCAL_SET, i];
  const i32 = (k: number): number[] => [I32_CONST, ...sleb(k)];
  const simd = (op: number): number[] => [SIMD, ...uleb(op)];
  const splat = (k: number): number[] => [...i32(k), ...simd(I8X16_SPLAT)];
  const load = (v: number, offset: number): number[] => [...get(P), ...simd(V128_LOAD), 0 /* align 2^0 */, ...uleb(offset), ...set(v)];
  const bad = (v: number): number[] => [
    ...simd(V128_CONST), ...lo, ...get(v), ...splat(15), ...simd(V128_AND), ...simd(I8X16_SWIZZLE),
    ...simd(V128_CONST), ...hi, ...get(v), ...i32(4), ...simd(I8X16_SHR_U), ...simd(I8X16_SWIZZLE),
    ...simd(V128_AND),
  ];
  const ws = (v: number): number[] => [...get(v), ...splat(33), ...simd(I8X16_LT_U), ...simd(I8X16_BITMASK), I32_POPCNT];
  const or = simd(V128_OR);
  /** (br_if depth (i32.gt_u (i32.add $p step) $end)) */
  const unlessRoom = (step: number, depth: number): number[] => [...get(P), ...i32(step), I32_ADD, ...get(END_), I32_GT_U, BR_IF, depth];
  const advance = (step: number): number[] => [...get(P), ...i32(step), I32_ADD, ...set(P)];

  const body = [
    BLOCK, VOID, LOOP, VOID,
    ...unlessRoom(64, 1),
    ...load(V0, 0), ...load(V0 + 1, 16), ...load(V0 + 2, 32), ...load(V0 + 3, 48),
    ...bad(V0), ...bad(V0 + 1), ...or, ...bad(V0 + 2), ...bad(V0 + 3), ...or, ...or,
    ...simd(V128_ANY_TRUE), BR_IF, 1,
    ...get(N), ...i32(64), ...ws(V0), ...ws(V0 + 1), I32_ADD, ...ws(V0 + 2), ...ws(V0 + 3), I32_ADD, I32_ADD, I32_SUB, I32_ADD, ...set(N),
    ...advance(64),
    BR, 0,
    END, END,
    BLOCK, VOID, LOOP, VOID,
    ...unlessRoom(16, 1),
    ...load(V0, 0),
    ...bad(V0), ...simd(V128_ANY_TRUE), BR_IF, 1,
    ...get(N), ...i32(16), ...ws(V0), I32_SUB, I32_ADD, ...set(N),
    ...advance(16),
    BR, 0,
    END, END,
    ...get(N), GLOBAL_SET, 0,
    ...get(P),
    END, // function
  ];
  const locals = vec([[4, V128], [1, I32]]);
  const code = [...locals, ...body];

  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // "\0asm", version 1
    ...section(SECTION.type, vec([[FUNC_TYPE, ...vec([[I32], [I32]]), ...vec([[I32]])]])),
    ...section(SECTION.function, vec([[0]])),
    ...section(SECTION.memory, vec([[0x00, 1]])), // limits: min 1 page, no max
    ...section(SECTION.global, vec([[I32, 0x01 /* mutable */, I32_CONST, 0, END]])),
    ...section(
      SECTION.export,
      vec([
        [...name('scan'), EXPORT_KIND.func, 0],
        [...name('mem'), EXPORT_KIND.memory, 0],
        [...name('count'), EXPORT_KIND.global, 0],
      ]),
    ),
    ...section(SECTION.code, vec([[...uleb(code.length), ...code]])),
  ]);
}

/** Bytes the kernel looks at per call: its memory. */
export const KERNEL_WINDOW = 64 * 1024;

export interface Base64Kernel {
  /** Copies data[from, from + n) (n <= KERNEL_WINDOW) into the window, at its start. */
  load(data: Uint8Array, from: number, n: number): void;
  /** Counts from window offset p up to end (see the module); returns where it stopped. */
  scan(p: number, end: number): number;
  /** The count of the last scan. */
  count(): number;
}

function instantiate(): Base64Kernel | null {
  const bytes = base64KernelModule();
  // Without SIMD (an engine built without it) the scalar decoder does all the work.
  if (!WebAssembly.validate(bytes)) return null;
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes));
  const exports = instance.exports as { scan: (p: number, end: number) => number; mem: WebAssembly.Memory; count: WebAssembly.Global };
  // The memory never grows, so one view stays valid.
  const view = new Uint8Array(exports.mem.buffer, 0, KERNEL_WINDOW);
  const countGlobal = exports.count;
  return {
    load: (data, from, n) => view.set(data.subarray(from, from + n)),
    scan: exports.scan,
    count: () => countGlobal.value as number,
  };
}

/** The kernel, or null where WebAssembly SIMD is not available. */
export const base64Kernel: Base64Kernel | null = instantiate();
