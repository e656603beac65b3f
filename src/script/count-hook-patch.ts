import { createHash } from 'node:crypto';
import { uleb, vec } from '../util/wasm-encoding.js';
import { assembleBody } from './wasm-asm.js';

/**
 * The script budgets rest on Lua's count hook, and with any count hook set Lua 5.4 leaves its
 * fast dispatch: luaV_execute calls luaG_traceexec before every instruction, which costs about
 * a third of a short callback's time in this wasm build. This patch of wasmoon's module makes
 * that call rare without giving up the guarantee that a loop is stopped.
 *
 * How: every call of luaG_traceexec from luaV_execute goes to `countStop` instead. While only
 * the count hook is on, it charges the instructions run since its last call and, unless the
 * count runs out, returns 0: the dispatch loop's `trap` is then off until an instruction
 * reloads it from its CallInfo, where it stays 1 while hooks are on. Lua reloads it at every
 * jump (loop back-edges included), for-loop step, call, return and instruction that can raise
 * an error or run the collector (lvm.c: dojump, OP_FORLOOP, Protect, `returning`): the places
 * Lua itself relies on to stop a loop when a signal handler sets a hook. When the count does
 * run out, or a line hook is on (the host sets none), the original luaG_traceexec runs as
 * before: it calls the hook, which checks the budget.
 *
 * Instructions are charged from the positions of the stops, kept in two globals the patch adds
 * (the last stop's pc and CallInfo): in the same frame, the distance from the last stop; just
 * after a call or a return, the distance the other frame ran from its last stop to where it
 * left (its savedpc, past the CALL or RETURN); otherwise (a jump back, a tail call, another
 * thread), or beyond 1,023, one. So straight code and calls count exactly, and each turn of a
 * loop at least one. (A taken forward jump stops too, so what a distance skips is only the
 * instruction after a test or an arithmetic fast path.)
 *
 * The patch is made only to the build it was written for, recognised by its SHA-256; with
 * another build, the module is left as it is and every instruction traps as Lua does it.
 */

/** wasmoon 1.16.0's glue.wasm (Lua 5.4, Emscripten). */
const KNOWN_BUILD = '95f3f19ddb740125883bc41d5ec670cd0828e7b58c8bdad385323cbff497b55c';
/** Function indices of that build (imports included), found with wasm-objdump -d. */
const TRACEEXEC = 280;
const EXECUTE = 575;
/** Calls of luaG_traceexec in luaV_execute: one per opcode's copy of `vmfetch`, and a few more. */
const CALL_SITES = 78;

/** lua_State's `hookcount` in that build (quick-find.ts charges its searches to it too). */
export const LUA_STATE_HOOKCOUNT = 108;
/**
 * Layouts of that build (wasm32): lua_State's `ci` at 20, `hookcount` at 108, `hookmask` at
 * 112; CallInfo's `previous` at 8, `next` at 12, `u.l.savedpc` at 16.
 */
const COUNT_STOP = {
  name: 'countStop',
  params: ['L', 'pc'],
  result: 'i32' as const,
  locals: { ci: 'i32' as const, w: 'i32' as const, n: 'i32' as const },
  body: `
    ;; A line hook (mask 4), or no count hook (mask 8): the original does it all.
    local.get $L
    i32.load offset=112
    i32.const 12
    i32.and
    i32.const 8
    i32.ne
    if
      local.get $L
      local.get $pc
      call $traceexec
      return
    end
    local.get $L
    i32.load offset=20
    local.tee $ci
    global.get $lastCi
    i32.eq
    if
      ;; Same frame: the run from the last stop to here.
      local.get $pc
      global.get $lastPc
      i32.sub
      i32.const 2
      i32.shr_u
      local.set $w
    else
      ;; Just returned from the frame of the last stop, or just called from it: that frame's
      ;; run from the last stop to where it left (its savedpc, past the RETURN or CALL).
      local.get $ci
      i32.load offset=12
      global.get $lastCi
      i32.eq
      local.get $ci
      i32.load offset=8
      global.get $lastCi
      i32.eq
      i32.or
      if
        global.get $lastCi
        i32.load offset=16
        global.get $lastPc
        i32.sub
        i32.const 2
        i32.shr_u
        local.set $w
      end
    end
    ;; Otherwise (another thread, a tail call, a jump back), or when out of 1..1023: one.
    local.get $w
    i32.const 1
    i32.sub
    i32.const 1023
    i32.gt_u
    if
      i32.const 1
      local.set $w
    end
    local.get $pc
    global.set $lastPc
    local.get $ci
    global.set $lastCi
    local.get $L
    i32.load offset=${LUA_STATE_HOOKCOUNT}
    local.get $w
    i32.sub
    local.tee $n
    i32.const 0
    i32.gt_s
    if
      local.get $L
      local.get $n
      i32.store offset=${LUA_STATE_HOOKCOUNT}
      i32.const 0
      return
    end
    ;; The count has run out: luaG_traceexec takes it to 0, resets it and calls the hook.
    local.get $L
    i32.const 1
    i32.store offset=${LUA_STATE_HOOKCOUNT}
    local.get $L
    local.get $pc
    call $traceexec`,
};

class Reader {
  constructor(
    readonly b: Uint8Array,
    public at = 0,
  ) {}
  byte(): number {
    return this.b[this.at++];
  }
  uleb(): number {
    let n = 0;
    let shift = 0;
    for (;;) {
      const c = this.b[this.at++];
      n += (c & 0x7f) * 2 ** shift;
      if (c < 0x80) return n;
      shift += 7;
    }
  }
  skipName(): void {
    const n = this.uleb();
    this.at += n;
  }
  skipLimits(): void {
    const flags = this.byte();
    this.uleb();
    if (flags & 1) this.uleb();
  }
}

interface Section {
  id: number;
  /** Content, without id and size. */
  body: Uint8Array;
}

function sections(bytes: Uint8Array): Section[] {
  const r = new Reader(bytes, 8);
  const out: Section[] = [];
  while (r.at < bytes.length) {
    const id = r.byte();
    const size = r.uleb();
    out.push({ id, body: bytes.subarray(r.at, r.at + size) });
    r.at += size;
  }
  return out;
}

/** How many functions and globals a module imports (they come first in their index spaces). */
function importCounts(importSection: Uint8Array): { funcs: number; globals: number } {
  const r = new Reader(importSection);
  let funcs = 0;
  let globals = 0;
  for (let i = r.uleb(); i > 0; i--) {
    r.skipName();
    r.skipName();
    const kind = r.byte();
    if (kind === 0x00) {
      r.uleb();
      funcs++;
    } else if (kind === 0x01) {
      r.byte();
      r.skipLimits();
    } else if (kind === 0x02) r.skipLimits();
    else if (kind === 0x03) {
      r.at += 2;
      globals++;
    } else fail(`unknown import kind ${kind}`);
  }
  return { funcs, globals };
}

/** The patched module, or null when `bytes` is not the known build. */
export function patchCountHook(bytes: Uint8Array): Uint8Array<ArrayBuffer> | null {
  if (createHash('sha256').update(bytes).digest('hex') !== KNOWN_BUILD) return null;
  const list = sections(bytes);
  const find = (id: number): Section => list.find((s) => s.id === id) ?? fail(`no section ${id}`);
  const { funcs: imports, globals: importedGlobals } = importCounts(find(2).body);

  const fr = new Reader(find(3).body);
  const types: number[] = [];
  for (let i = fr.uleb(); i > 0; i--) types.push(fr.uleb());
  const newIndex = imports + types.length;

  const cr = new Reader(find(10).body);
  const bodies: Uint8Array[] = [];
  for (let i = cr.uleb(); i > 0; i--) {
    const size = cr.uleb();
    bodies.push(cr.b.slice(cr.at, cr.at + size));
    cr.at += size;
  }
  const exec = bodies[EXECUTE - imports];
  // Every call to TRACEEXEC (0x10, then its index) becomes a call to the new function; both
  // indices take two bytes, so nothing moves. The count is that of a disassembly of this
  // build: a stray match inside an immediate would show as one too many.
  const from = uleb(TRACEEXEC);
  const to = uleb(newIndex);
  if (from.length !== to.length) fail('index lengths differ');
  const sites: number[] = [];
  for (let i = 0; i + from.length < exec.length; i++) {
    if (exec[i] === 0x10 && from.every((b, k) => exec[i + 1 + k] === b)) sites.push(i);
  }
  if (sites.length !== CALL_SITES) fail(`${sites.length} call sites, expected ${CALL_SITES}`);
  for (const i of sites) exec.set(to, i + 1);

  // Two mutable i32 globals for the last stop, after the module's own.
  const gr = new Reader(find(6).body);
  const globalCount = gr.uleb();
  const firstNew = importedGlobals + globalCount;
  const globals = [Uint8Array.from(uleb(globalCount + 2)), find(6).body.subarray(gr.at), Uint8Array.from([0x7f, 0x01, 0x41, 0x00, 0x0b, 0x7f, 0x01, 0x41, 0x00, 0x0b])];
  const stop = assembleBody(COUNT_STOP, new Map([['traceexec', TRACEEXEC]]), new Map([['lastPc', firstNew], ['lastCi', firstNew + 1]]));

  const code = [Uint8Array.from(uleb(bodies.length + 1)), ...bodies.flatMap((b) => [Uint8Array.from(uleb(b.length)), b]), Uint8Array.from(stop)];
  const funcs = [Uint8Array.from(vec([...types, types[TRACEEXEC - imports]].map((t) => uleb(t))))];
  const out: Uint8Array[] = [bytes.subarray(0, 8)];
  for (const s of list) {
    const body = s.id === 3 ? funcs : s.id === 6 ? globals : s.id === 10 ? code : [s.body];
    out.push(Uint8Array.from([s.id, ...uleb(body.reduce((n, b) => n + b.length, 0))]), ...body);
  }
  return Buffer.concat(out);
}

function fail(why: string): never {
  throw new Error(`count-hook patch: ${why}`);
}
