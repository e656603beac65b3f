import { name, section, sleb, uleb, vec } from '../util/wasm-encoding.js';

/**
 * A small assembler for the few wasm functions the script host writes itself (the per-state
 * allocator, the count stop, the line table, the class scans, the quick find): bodies in the
 * linear form of the WebAssembly text format, one instruction per line, `;;` comments. Enough
 * of the language for that code and no more: i32, i64 and v128 locals, globals, void blocks,
 * loops and ifs with optional `$labels`, calls by `$name`, and the integer, memory, control
 * and few SIMD instructions listed below. An unknown instruction, local, global, label or
 * function is an error naming the function and line.
 */

type ValType = 'i32' | 'i64' | 'v128';

export interface AsmFunction {
  name: string;
  /** Parameter names, all i32. */
  params: string[];
  result?: ValType;
  locals?: Record<string, ValType>;
  exported?: boolean;
  body: string;
}

export interface AsmImportedFunction {
  name: string;
  /** `module.field` in the import object. */
  from: [string, string];
  /** How many i32 parameters, or their types. */
  params: number | ValType[];
  result: boolean;
}

export interface AsmModule {
  /** The imported memory as `module.field`. */
  memory: [string, string];
  imports: AsmImportedFunction[];
  functions: AsmFunction[];
}

const VAL: Record<ValType, number> = { i32: 0x7f, i64: 0x7e, v128: 0x7b };

/** Instructions whose immediate is a local, a function, a memory offset or a branch depth. */
const LOCAL_OPS: Record<string, number> = { 'local.get': 0x20, 'local.set': 0x21, 'local.tee': 0x22 };
const GLOBAL_OPS: Record<string, number> = { 'global.get': 0x23, 'global.set': 0x24 };
const MEMORY_OPS: Record<string, number> = { 'i32.load': 0x28, 'i32.load8_u': 0x2d, 'i32.store': 0x36 };
/** SIMD instructions (after the 0xfd prefix); v128.load takes a memory offset. */
const SIMD_OPS: Record<string, number> = { 'v128.load': 0x00, 'i8x16.splat': 0x0f, 'i8x16.eq': 0x23, 'v128.or': 0x50, 'i8x16.bitmask': 0x64 };
const BRANCH_OPS: Record<string, number> = { br: 0x0c, br_if: 0x0d };
const BLOCK_OPS: Record<string, number> = { block: 0x02, loop: 0x03, if: 0x04 };

/** Instructions without immediates. */
const OPCODES: Record<string, number> = {
  return: 0x0f,
  drop: 0x1a,
  select: 0x1b,
  'i32.eqz': 0x45,
  'i32.eq': 0x46,
  'i32.ne': 0x47,
  'i32.lt_u': 0x49,
  'i32.gt_s': 0x4a,
  'i32.gt_u': 0x4b,
  'i32.le_u': 0x4d,
  'i32.ge_u': 0x4f,
  'i64.gt_s': 0x55,
  'i32.add': 0x6a,
  'i32.sub': 0x6b,
  'i32.and': 0x71,
  'i32.or': 0x72,
  'i32.shl': 0x74,
  'i32.shr_u': 0x76,
  'i32.ctz': 0x68,
  'i64.add': 0x7c,
  'i64.sub': 0x7d,
  'i32.wrap_i64': 0xa7,
  'i64.extend_i32_s': 0xac,
  'i64.extend_i32_u': 0xad,
};

/**
 * One function's entry of the code section (its size, locals and code); calls resolve through
 * `funcIndex`, `global.get/set $name` through `globalIndex`.
 */
export function assembleBody(f: AsmFunction, funcIndex: Map<string, number>, globalIndex = new Map<string, number>()): number[] {
  const locals = new Map<string, number>();
  f.params.forEach((p, i) => locals.set(p, i));
  const declared = Object.entries(f.locals ?? {});
  declared.forEach(([n], i) => locals.set(n, f.params.length + i));
  const code: number[] = [];
  // Open blocks, innermost last: their labels, for br depths.
  const blocks: (string | null)[] = [];
  const lines = f.body.split('\n');
  lines.forEach((raw, lineNo) => {
    const text = raw.replace(/;;.*$/, '').trim();
    if (!text) return;
    const [op, ...args] = text.split(/\s+/);
    const fail = (why: string): never => {
      throw new Error(`wasm-asm: ${f.name} line ${lineNo + 1} "${text}": ${why}`);
    };
    const ref = (map: Map<string, number>, what: string): number => {
      const a = args[0];
      if (!a?.startsWith('$') || !map.has(a.slice(1))) fail(`unknown ${what}`);
      return map.get(a.slice(1))!;
    };
    const depth = (): number => {
      const label = args[0]?.startsWith('$') ? args[0].slice(1) : fail('a branch needs a $label');
      const i = blocks.lastIndexOf(label);
      if (i < 0) fail('unknown label');
      return blocks.length - 1 - i;
    };
    const memarg = (): number[] => {
      const m = /^offset=(\d+)$/.exec(args[0] ?? 'offset=0');
      if (!m) fail('bad memory offset');
      // The natural alignment (log2 of the access size) as the alignment hint.
      return [op === 'i32.load8_u' ? 0x00 : op === 'v128.load' ? 0x04 : 0x02, ...uleb(Number(m![1]))];
    };
    if (Object.hasOwn(LOCAL_OPS, op)) {
      code.push(LOCAL_OPS[op], ...uleb(ref(locals, 'local')));
      return;
    }
    if (Object.hasOwn(GLOBAL_OPS, op)) {
      code.push(GLOBAL_OPS[op], ...uleb(ref(globalIndex, 'global')));
      return;
    }
    if (Object.hasOwn(MEMORY_OPS, op)) {
      code.push(MEMORY_OPS[op], ...memarg());
      return;
    }
    if (Object.hasOwn(SIMD_OPS, op)) {
      code.push(0xfd, ...uleb(SIMD_OPS[op]), ...(op === 'v128.load' ? memarg() : []));
      return;
    }
    if (Object.hasOwn(BRANCH_OPS, op)) {
      code.push(BRANCH_OPS[op], ...uleb(depth()));
      return;
    }
    if (Object.hasOwn(BLOCK_OPS, op)) {
      code.push(BLOCK_OPS[op], 0x40);
      blocks.push(args[0]?.startsWith('$') ? args[0].slice(1) : null);
      return;
    }
    switch (op) {
      case 'call':
        code.push(0x10, ...uleb(ref(funcIndex, 'function')));
        break;
      case 'i32.const':
        code.push(0x41, ...sleb(BigInt.asIntN(32, BigInt(args[0] ?? fail('missing value')))));
        break;
      case 'i64.const':
        code.push(0x42, ...sleb(BigInt(args[0] ?? fail('missing value'))));
        break;
      case 'memory.copy':
        code.push(0xfc, 0x0a, 0x00, 0x00);
        break;
      case 'else':
        if (!blocks.length) fail('else outside if');
        code.push(0x05);
        break;
      case 'end':
        if (!blocks.length) fail('end without a block');
        blocks.pop();
        code.push(0x0b);
        break;
      default:
        if (!Object.hasOwn(OPCODES, op)) fail('unknown instruction');
        code.push(OPCODES[op]);
    }
  });
  if (blocks.length) throw new Error(`wasm-asm: ${f.name}: ${blocks.length} block(s) not closed`);
  // Consecutive locals of one type share a declaration.
  const groups: number[][] = [];
  for (const [, t] of declared) {
    const last = groups[groups.length - 1];
    if (last && last[1] === VAL[t]) last[0]++;
    else groups.push([1, VAL[t]]);
  }
  const body = [...vec(groups.map(([n, t]) => [...uleb(n), t])), ...code, 0x0b];
  return [...uleb(body.length), ...body];
}

/** The binary module. Functions are numbered imports first, then in the order given. */
export function assemble(mod: AsmModule): Uint8Array<ArrayBuffer> {
  const funcIndex = new Map<string, number>();
  [...mod.imports.map((f) => f.name), ...mod.functions.map((f) => f.name)].forEach((n, i) => funcIndex.set(n, i));
  // One type per distinct signature.
  const types: string[] = [];
  const typeOf = (params: number | ValType[], result: ValType | undefined): number => {
    const key = `${(typeof params === 'number' ? Array<ValType>(params).fill('i32') : params).join(',')}:${result ?? ''}`;
    let i = types.indexOf(key);
    if (i < 0) i = types.push(key) - 1;
    return i;
  };
  const importTypes = mod.imports.map((f) => typeOf(f.params, f.result ? 'i32' : undefined));
  const funcTypes = mod.functions.map((f) => typeOf(f.params.length, f.result));
  const typeSection = vec(
    types.map((key) => {
      const [ps, r] = key.split(':');
      return [0x60, ...vec(ps ? ps.split(',').map((t) => [VAL[t as ValType]]) : []), ...vec(r ? [[VAL[r as ValType]]] : [])];
    }),
  );
  const imports = [
    [...name(mod.memory[0]), ...name(mod.memory[1]), 0x02, 0x00, 0x00],
    ...mod.imports.map((f, i) => [...name(f.from[0]), ...name(f.from[1]), 0x00, ...uleb(importTypes[i])]),
  ];
  const exportsList = mod.functions.flatMap((f) => (f.exported ? [[...name(f.name), 0x00, ...uleb(funcIndex.get(f.name)!)]] : []));
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, typeSection),
    ...section(2, vec(imports)),
    ...section(3, vec(funcTypes.map((t) => uleb(t)))),
    ...section(7, vec(exportsList)),
    ...section(10, vec(mod.functions.map((f) => assembleBody(f, funcIndex)))),
  ]);
}
