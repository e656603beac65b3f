import type { Logger } from 'pino';
import { parseReplyText, type Reply } from '../smtp/reply.js';
import {
  ScriptStopped,
  type ProcessActions,
  type ProcessMessageArgs,
  type RecipientView,
  type SessionFacts,
  type SessionHooks,
  type SessionPolicy,
} from '../smtp/hooks.js';
import type { CallBudget, CallResult, LuaState, LuaValue } from './lua-state.js';
import type { ScriptMetrics } from './metrics.js';
import { vpop3Library, type MessageContext } from './vpop3-lib.js';
import { LUA_MULTRET, LUA_REGISTRYINDEX } from './lua-vm.js';
import { splitLines } from '../smtp/line-batcher.js';
import type { GlobalUse } from './global-use.js';

/** S6: the number 0 is false, any other number true. */
export function luaBool(v: LuaValue): boolean {
  if (typeof v === 'number') return v !== 0;
  return v !== null && v !== false;
}

const luaNumber = (v: LuaValue, fallback: number): number => (typeof v === 'number' && Number.isFinite(v) ? v : fallback);

/** IN/OUT globals and the policy field each one drives (S24, S25). */
const POLICY_GLOBALS: [string, keyof SessionPolicy][] = [
  ['ValidClientAddress', 'validClient'],
  ['LocalClientAddress', 'localClient'],
  ['AuthenticationRequired', 'authRequired'],
  ['AllowedUsers', 'allowedUsers'],
  ['ForceDisconnect', 'forceDisconnect'],
  ['UseBATV', 'useBATV'],
  ['MaxRecipientsPerLocalMessage', 'maxRecipientsLocal'],
  ['MaxRecipientsPerIncomingMessage', 'maxRecipientsIncoming'],
  ['MaxMessagesPerLocalSession', 'maxMessagesLocal'],
  ['MaxLineLength', 'maxLineLength'],
  ['AddUserAddresses', 'addUserAddresses'],
  ['CheckRBL', 'checkRbl'],
  ['RBLServers', 'rblServers'],
  ['RBLWhitelist', 'rblWhitelist'],
  ['RBLCheckAllServers', 'rblCheckAll'],
  ['RBLFound', 'rblFound'],
  ['RBLAccept', 'rblAccept'],
  ['RBLBlackhole', 'rblBlackhole'],
  ['RBLRedirect', 'rblRedirect'],
  ['RBLRejectMessage', 'rblRejectMessage'],
  ['RBLHeader', 'rblHeader'],
];

const LINE_HOOKS = ['MessageLineRaw', 'MessageLine'];

/** The IN globals (S7, S25), pushed before every whole callback. RBLResultInfo comes apart. */
const FACT_GLOBALS = ['IPAddress', 'AuthenticatedUser', 'SMTPAuthenticatedUser', 'ServerID', 'ServerName', 'Encryption', 'EncryptionDetails', 'HeloName', 'MailFrom', 'SessionID'];

const HOOK_NAMES = [
  'Start', 'RBLResults', 'GetMaxMessageSize', 'GetEHLOCapabilities', 'DoHELO', 'DoHELP', 'DoQUIT', 'DoNOOP', 'DoRSET',
  'DoVRFY', 'DoEXPN', 'DoMAILFROM', 'DoRCPTTO', 'DoDATAStart', 'DoUnrecognised', 'StartMessage', 'MessageLineRaw',
  'MessageLine', 'EndMessage', 'CheckRecipients', 'ProcessMessage', 'MonitorBcc', 'LogRecipients', 'LogRecipientsBlocked', 'End',
];

const NOT_PUSHED = Symbol('not pushed');

const luaList = (names: string[]): string => `{ ${names.map((n) => `'${n}'`).join(', ')} }`;

/** Entries of a list global (RBLServers, RBLWhitelist) the host reads; the rest are ignored. */
export const LIST_MAX = 256;

/** Indexes (1-based) of the IN/OUT globals that hold lists (RBLServers, RBLWhitelist). */
const LIST_SLOTS = new Set(POLICY_GLOBALS.map(([, k], i) => [k, i + 1] as const).filter(([k]) => k === 'rblServers' || k === 'rblWhitelist').map(([, i]) => i));

/**
 * The fast halves of syncin and readback: one field access per global with constant names,
 * no C function per global. Used while the globals table has no metatable; with one, a
 * script's __index or __newindex could run outside any budget, so the raw loops serve.
 */
const fastSyncFacts = FACT_GLOBALS.map((g, i) => `G.${g} = fshadow[${i + 1}]`).join('\n    ');
const fastReadback = POLICY_GLOBALS.map(([g], i) =>
  LIST_SLOTS.has(i + 1)
    ? `v = G.${g} if not rawequal(v, pshadow[${i + 1}]) or (pcopy[${i + 1}] and not same(v, pcopy[${i + 1}])) then n = report(n, ${i + 1}, v) end`
    : `v = G.${g} if v ~= pshadow[${i + 1}] then n = report(n, ${i + 1}, v) end`,
).join('\n    ');

/**
 * The session's helpers inside its state, run with the primitives saved before the script ran
 * (a script replacing rawget cannot get into them) and the globals table:
 *  - hooks(): which of HOOK_NAMES the script defines, as a list of booleans;
 *  - syncin(rbl, i, v, ...): the host's changes before a whole callback, in one call: a pair
 *    with i > 0 gives fact i a new value, with i < 0 sets policy global -i; rbl, a new
 *    RBLResultInfo, is nil when it has not changed. Then every IN global the script
 *    overwrote is put back (S7). The host skips the call when it has nothing to change and
 *    readback has already put the IN globals back;
 *  - readback(): after a whole callback, puts the IN globals back and returns the policy
 *    globals that differ from what the host last set or read, as pairs (i, value); a list
 *    global also when its entries changed in place;
 *  - lines(raws): MessageLineRaw and MessageLine over a run of lines, in one call (a call
 *    into the VM costs more than the usual per-line script; lines come one socket read at a
 *    time). The lines are the block the host staged, made into a table by the VM's C function
 *    (line-table.ts), with no call from JS per line. An error in one callback does not stop
 *    the others; the batch shares one budget. raws[i] is given only where the raw line differs
 *    (a dot-stuffed one). Returns the lines whose result is not "keep" as pairs (i, result) and
 *    the errors as pairs (callback, message).
 * syncin and readback run unprotected and outside any budget: they only read and set fields
 * of the globals table, raw.
 */
const HOOKS_LUA = `
local P, G = ...
local rawget, rawset, rawequal, type, select, pcall, tostring, unpack, next, getmetatable = P.rawget, P.rawset, P.rawequal, P.type, P.select, P.pcall, P.tostring, P.unpack, P.next, P.getmetatable
local getlines = P.getlines
local hooknames = ${luaList(HOOK_NAMES)}
local facts = ${luaList(FACT_GLOBALS)}
local policy = ${luaList(POLICY_GLOBALS.map(([g]) => g))}
local lists = { ${[...LIST_SLOTS].map((i) => `[${i}] = true`).join(', ')} }
local nfacts, npolicy = #facts, #policy
local fshadow, pshadow, changed = {}, {}, {}
-- A list global (RBLServers) may be changed in place: its entries as last set or read.
local pcopy = {}
-- What a scalar global's shadow holds when the script put a table there: a value no script
-- can reach, so the next comparison is raw (== on two tables may run a script's __eq).
local TABLE = function() end
-- These run outside any budget, on tables a script may have made huge: they look at no more
-- than LIST_MAX entries, and a list global counts only that many (the host reads the copy).
local LIST_MAX = ${LIST_MAX}
local function copy(t)
  local c, n = {}, 0
  for k, v in next, t do
    n = n + 1
    if n > LIST_MAX then break end
    c[k] = v
  end
  return c
end
-- Whether t holds what c does, as far as copy looks (both tables of plain values).
local function same(t, c)
  local n = 0
  for k, v in next, t do
    n = n + 1
    if n > LIST_MAX then break end
    if not rawequal(c[k], v) then return false end
  end
  for k in next, c do if rawget(t, k) == nil then return false end end
  return true
end
-- RBLResultInfo: the table set, and a copy of what it held, to put back if a script changed it.
local rblset, rblcopy = nil, {}
local function hooks()
  local r = {}
  for i = 1, #hooknames do r[i] = type(rawget(G, hooknames[i])) == 'function' end
  return unpack(r, 1, #hooknames)
end
-- The IN globals back to the host's values, whatever the script wrote.
local function restore()
  if getmetatable(G) == nil then
    ${fastSyncFacts}
  else
    for i = 1, nfacts do
      local v = fshadow[i]
      if not rawequal(rawget(G, facts[i]), v) then rawset(G, facts[i], v) end
    end
  end
  if rblset == nil then return end
  if not rawequal(rawget(G, 'RBLResultInfo'), rblset) or not same(rblset, rblcopy) then
    rblset = copy(rblcopy)
    rawset(G, 'RBLResultInfo', rblset)
  end
end
local function syncin(rbl, ...)
  for k = 1, select('#', ...), 2 do
    local i, v = select(k, ...)
    if i > 0 then fshadow[i] = v
    else
      pshadow[-i] = v
      if lists[-i] and type(v) == 'table' then pcopy[-i] = copy(v) end
      rawset(G, policy[-i], v)
    end
  end
  if rbl ~= nil then rblset, rblcopy = rbl, copy(rbl) end
  restore()
end
local function report(n, i, v)
  if lists[i] then
    pshadow[i] = v
    if type(v) == 'table' then
      pcopy[i] = copy(v)
      v = pcopy[i]
    else pcopy[i] = nil end
  else
    pshadow[i] = type(v) == 'table' and TABLE or v
  end
  changed[n + 1], changed[n + 2] = i, v
  return n + 2
end
local function readback()
  restore()
  local n = 0
  if getmetatable(G) == nil then
    local v
    ${fastReadback}
  else
    for i = 1, npolicy do
      local v = rawget(G, policy[i])
      local c = pcopy[i]
      if not rawequal(v, pshadow[i]) or (c and not same(v, c)) then n = report(n, i, v) end
    end
  end
  return unpack(changed, 1, n)
end
-- The line callbacks run unprotected inside one protected call per batch (pcall crosses
-- into JS in this build, and costs more than a short callback). An error ends that call
-- only: the batch goes on after the callback that raised it, as if each were protected.
-- pos is the line being called back: i in MessageLineRaw, -i in MessageLine.
local ls, raws, raw, ml, out, no, pos
local function record(i, v)
  if v == false or type(v) == 'string' or type(v) == 'number' then
    out[no + 1], out[no + 2] = i, v
    no = no + 2
  end
end
-- Any case: from line 'from', its MessageLineRaw skipped when it has run (it raised).
local function run(from, skipraw)
  for i = from, #ls do
    local line = ls[i]
    if raw and not skipraw then
      pos = i
      raw(raws[i] or line)
    end
    skipraw = false
    if ml then
      pos = -i
      local v = ml(line)
      if v ~= nil then record(i, v) end
    end
  end
end
-- The usual cases, with no dot-stuffed line and no error yet: fewer instructions a line.
local function run_both(from)
  local ls, raw, ml = ls, raw, ml
  for i = from, #ls do
    local line = ls[i]
    pos = i
    raw(line)
    pos = -i
    local v = ml(line)
    if v ~= nil then record(i, v) end
  end
end
local function run_ml(from)
  local ls, ml = ls, ml
  for i = from, #ls do
    pos = -i
    local v = ml(ls[i])
    if v ~= nil then record(i, v) end
  end
end
local function run_raw(from)
  local ls, raw = ls, raw
  for i = from, #ls do
    pos = i
    raw(ls[i])
  end
end
local function lines(raws_)
  ls, raws, out, no = getlines(), raws_, {}, 0
  raw, ml = rawget(G, 'MessageLineRaw'), rawget(G, 'MessageLine')
  if type(raw) ~= 'function' then raw = nil end
  if type(ml) ~= 'function' then ml = nil end
  local errs, ok, e = {}, true, nil
  if next(raws) ~= nil then ok, e = pcall(run, 1, false)
  elseif raw and ml then ok, e = pcall(run_both, 1)
  elseif ml then ok, e = pcall(run_ml, 1)
  elseif raw then ok, e = pcall(run_raw, 1) end
  -- After an error, the general loop goes on from the callback after the one that raised.
  while not ok do
    errs[#errs + 1] = pos > 0 and 'MessageLineRaw' or 'MessageLine'
    errs[#errs + 1] = tostring(e)
    if pos > 0 then ok, e = pcall(run, pos, true) else ok, e = pcall(run, 1 - pos, false) end
  end
  local o = out
  ls, raws, raw, ml, out = nil, nil, nil, nil, nil
  return o, errs
end
return hooks, syncin, readback, lines
`;
const DOT = Buffer.from('.');
const ANALYSIS_HOOKS = ['CheckRecipients', 'ProcessMessage', 'MonitorBcc', 'LogRecipients', 'LogRecipientsBlocked'];

const strings = (v: LuaValue | undefined): string[] =>
  Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : typeof v === 'string' && v ? [v] : [];

/** The helpers' references and the hooks a script defines, as a template's session found them. */
export interface HooksSetup {
  helpers: { syncin: bigint; readback: bigint; lines: number } | null;
  defined: ReadonlySet<string>;
}

/** Sets up the HOOKS_LUA helpers in a new state and finds the hooks its script defines. */
function setUpHooks(state: LuaState): HooksSetup {
  const refs = state.internalFunctions(HOOKS_LUA, '=hooks');
  if (!refs) return { helpers: null, defined: new Set(HOOK_NAMES.filter((n) => state.hasFunction(n))) };
  const [hooks, syncin, readback, lines] = refs;
  const m = state.vm.m;
  const L = state.L;
  const base = m._lua_gettop(L);
  m._lua_rawgeti(L, LUA_REGISTRYINDEX, BigInt(hooks));
  m._lua_callk(L, 0, HOOK_NAMES.length, 0, 0);
  const defined = new Set(HOOK_NAMES.filter((_, i) => m._lua_toboolean(L, base + 1 + i) !== 0));
  m._lua_settop(L, base);
  return { helpers: { syncin: BigInt(syncin), readback: BigInt(readback), lines }, defined };
}

/**
 * SMTPSVR.LUA driving one session: sets the globals before each callback, reads the IN/OUT
 * ones back into the session's policy afterwards, and turns the script's return values into
 * replies (S5). A runtime error is logged and ignored; a budget stop switches the script off
 * for the session and throws ScriptStopped so the session answers 451 (S4).
 */
export class ScriptHooks implements SessionHooks {
  private off = false;
  readonly wantsLines: boolean;
  readonly wantsAnalysis: boolean;
  private readonly defined: ReadonlySet<string>;
  /** Registry references of the HOOKS_LUA helpers; null when they could not be set up. */
  private readonly helpers: HooksSetup['helpers'];
  /** The RBLResultInfo object last given to syncin. */
  private rblPushed: SessionFacts['rblResultInfo'] | null = null;
  /** Fact values last given to syncin (FACT_GLOBALS order). */
  private readonly factsPushed: LuaValue[] = [];
  /** setGlobals' list of what to push: i for fact i, -i for IN/OUT global i (1-based). */
  private readonly changed: number[] = [];
  /**
   * Last values of the IN/OUT globals pushed (or read back unchanged), by POLICY_GLOBALS
   * index, so only changes cost a push; NOT_PUSHED where the script's value is unknown.
   */
  private readonly pushed: unknown[] = POLICY_GLOBALS.map(() => NOT_PUSHED);
  /**
   * Whether the IN globals in the state are known to hold the host's values: readback puts
   * them back after each whole callback. A failed callback or a run of line callbacks (which
   * skip the round trip) leaves them unknown, and the next whole callback's sync puts them back.
   */
  private restored = false;
  /** Whether the globals were ever set: line callbacks skip the round trip only after that. */
  private synced = false;
  /**
   * What the script's code names (global-use.ts), when it reaches globals only by constant
   * names: the facts and IN/OUT globals it never names are not pushed (`factSlots` and
   * `policySlots` hold the indexes of those that are), and when it can change none of those
   * the host sets or reads back (`quiet`), the readback after each callback is skipped.
   */
  private readonly factSlots: number[] = FACT_GLOBALS.map((_, i) => i);
  private readonly policySlots: number[] = POLICY_GLOBALS.map((_, i) => i);
  private readonly rblUsed: boolean = true;
  private readonly quiet: boolean = false;
  /** Hook calls made so far, in order: the script test bench prints them. */
  trace: ((entry: { hook: string; args: LuaValue[]; result: CallResult; ms: number }) => void) | null = null;

  /** Gives the state back at the end of the session (closes it, unless the host keeps it). */
  private readonly release: (state: LuaState) => void;

  /**
   * With `made`, the state comes from a template that had the helpers set up already (see
   * ScriptHost): their references and the hooks found are taken from it.
   */
  constructor(
    private readonly state: LuaState,
    private readonly policy: SessionPolicy,
    private readonly facts: () => SessionFacts,
    private readonly budget: CallBudget,
    private readonly log: Logger,
    private readonly metrics: ScriptMetrics,
    options: { made?: HooksSetup; release?: (state: LuaState) => void; globals?: GlobalUse | null } = {},
  ) {
    this.release = options.release ?? ((s) => s.close());
    ({ helpers: this.helpers, defined: this.defined } = options.made ?? setUpHooks(state));
    const use = options.globals;
    if (use && !use.dynamic && this.helpers) {
      this.factSlots = this.factSlots.filter((i) => use.named.has(FACT_GLOBALS[i]));
      this.policySlots = this.policySlots.filter((i) => use.named.has(POLICY_GLOBALS[i][0]));
      this.rblUsed = use.named.has('RBLResultInfo');
      // A list global (RBLServers) can change in place through any reference to it; RBLResultInfo too.
      this.quiet = !this.rblUsed && !FACT_GLOBALS.some((g) => use.written.has(g)) && !POLICY_GLOBALS.some(([g], i) => use.written.has(g) || (LIST_SLOTS.has(i + 1) && use.named.has(g)));
    }
    this.wantsLines = LINE_HOOKS.some((h) => this.defined.has(h));
    this.wantsAnalysis = ANALYSIS_HOOKS.some((h) => this.defined.has(h));
  }

  has(hook: string): boolean {
    return !this.off && this.defined.has(hook);
  }

  /** What a session made from the same template takes over (see the constructor). */
  get setup(): HooksSetup {
    return { helpers: this.helpers, defined: this.defined };
  }

  private setGlobals(): void {
    const f = this.facts();
    const p = this.policy;
    this.synced = true;
    // IN globals are put back before every callback, so a script's own write to one never
    // outlives the callback that made it (S7).
    const facts: LuaValue[] = [f.ip, f.authUser, f.authUser, f.serviceId, f.serviceName, f.tls !== '', f.tls, f.helo, f.mailFrom, f.sessionId];
    if (!this.helpers) {
      for (let i = 0; i < facts.length; i++) this.state.setGlobal(FACT_GLOBALS[i], facts[i]);
      this.state.setGlobal('RBLResultInfo', f.rblResultInfo);
      for (let i = 0; i < POLICY_GLOBALS.length; i++) {
        const [g, k] = POLICY_GLOBALS[i];
        const v = p[k];
        if (this.pushed[i] === v) continue;
        this.state.setGlobal(g, v);
        this.pushed[i] = v;
      }
      return;
    }
    // One call: the facts and IN/OUT globals that changed on the host's side, as pairs. What
    // changed is found first, so a callback with nothing to sync makes no call into the VM.
    const fp = this.factsPushed;
    // RBLResultInfo only when it is a new table; the helper restores the last one.
    const newRbl = this.rblUsed && this.rblPushed !== f.rblResultInfo;
    const changed = this.changed;
    changed.length = 0;
    for (const i of this.factSlots) {
      const v = facts[i];
      if (fp.length > i && fp[i] === v) continue;
      fp[i] = v;
      changed.push(i + 1);
    }
    // IN/OUT globals only when they differ from what the script holds (see readBack).
    for (const i of this.policySlots) {
      const v = p[POLICY_GLOBALS[i][1]];
      if (this.pushed[i] === v) continue;
      this.pushed[i] = v;
      changed.push(-(i + 1));
    }
    // Nothing changed on the host's side, and nothing of the script's to undo: no call.
    if (changed.length === 0 && !newRbl && this.restored) return;
    const state = this.state;
    const m = state.vm.m;
    const L = state.L;
    m._lua_checkstack(L, 4 + 2 * changed.length);
    m._lua_rawgeti(L, LUA_REGISTRYINDEX, this.helpers.syncin);
    if (newRbl) {
      state.push(f.rblResultInfo, 0);
      this.rblPushed = f.rblResultInfo;
    } else m._lua_pushnil(L);
    for (const c of changed) {
      m._lua_pushinteger(L, BigInt(c));
      state.push(c > 0 ? facts[c - 1] : this.pushed[-c - 1] as LuaValue, 0);
    }
    this.restored = true;
    state.vm.disarmHook(L);
    m._lua_callk(L, 1 + 2 * changed.length, 0, 0, 0);
  }

  private readBack(): void {
    const p = this.policy as unknown as Record<string, LuaValue>;
    const update = (i: number, v: LuaValue): void => {
      const k = POLICY_GLOBALS[i][1];
      const old = p[k];
      let next: LuaValue;
      if (Array.isArray(old)) {
        // A list global (RBLServers): an empty Lua table reads back as {}, not [].
        const list = Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : v && typeof v === 'object' && !Buffer.isBuffer(v) && !Object.keys(v).length ? [] : old;
        if (list.length !== old.length || list.some((x, j) => x !== old[j])) p[k] = list;
        this.pushed[i] = p[k];
        return;
      }
      if (typeof old === 'boolean') next = luaBool(v);
      else if (typeof old === 'number') next = Math.max(0, Math.floor(luaNumber(v, old as number)));
      else next = typeof v === 'string' ? v : old;
      if (next !== old) p[k] = next;
      // What the script holds is the policy value only when it wrote it in that form (1 is
      // true, -5 is 0, a string in a number is ignored); otherwise push the value next time.
      this.pushed[i] = v === next ? next : NOT_PUSHED;
    };
    if (!this.helpers) {
      for (let i = 0; i < POLICY_GLOBALS.length; i++) update(i, this.state.getGlobal(POLICY_GLOBALS[i][0]));
      return;
    }
    // Only what the script changed comes back (see HOOKS_LUA); the rest holds what the host knows.
    const state = this.state;
    const m = state.vm.m;
    const L = state.L;
    const base = m._lua_gettop(L);
    m._lua_rawgeti(L, LUA_REGISTRYINDEX, this.helpers.readback);
    state.vm.disarmHook(L);
    m._lua_callk(L, 0, LUA_MULTRET, 0, 0);
    const top = m._lua_gettop(L);
    for (let i = base + 1; i < top; i += 2) update(Number(m._lua_tointegerx(L, i, 0)) - 1, state.read(i + 1, 0));
    m._lua_settop(L, base);
  }

  /**
   * Runs one callback; null when it is absent, failed, or the script is off. The per-line
   * callbacks (`perLine`) skip the globals round trip: nothing a global reflects can change
   * between two lines of one message, and what a line callback writes to an IN/OUT global is
   * read back after the next whole callback (EndMessage at the latest). That round trip, not
   * the Lua code, is most of a callback's cost.
   */
  private call(hook: string, args: LuaValue[], bytes = false, perLine = false): LuaValue[] | null {
    if (!this.has(hook)) return null;
    if (!perLine || !this.synced) this.setGlobals();
    if (perLine && !this.quiet) this.restored = false;
    const t0 = performance.now();
    const r = this.state.call(hook, args, this.budget, bytes);
    const ms = performance.now() - t0;
    this.metrics.record(hook, r.kind, ms, 'message' in r ? r.message : undefined);
    this.trace?.({ hook, args, result: r, ms });
    if (r.kind === 'ok') {
      if (!perLine && !this.quiet) this.readBack();
      return r.values;
    }
    if (r.kind === 'absent') return null;
    // A failed callback counts as absent: whatever it wrote to the globals is overwritten.
    this.forget();
    if (r.kind === 'stopped') {
      this.off = true;
      this.log.warn({ hook, stop: r.stop, err: r.message }, 'script stopped; switched off for this session');
      throw new ScriptStopped(hook, r.message);
    }
    this.log.warn({ hook, err: r.message }, 'script error');
    return null;
  }

  /** After a failed callback: the state's globals are whatever the script left. */
  private forget(): void {
    this.pushed.fill(NOT_PUSHED);
    this.restored = false;
  }

  /** S5: "" or nil is the default; a string without a valid code is logged and ignored. */
  private toReply(hook: string, v: LuaValue | undefined): Reply | null {
    if (v === null || v === undefined || v === '') return null;
    const text = typeof v === 'number' ? String(v) : typeof v === 'string' ? v : null;
    const r = text === null ? null : parseReplyText(text);
    if (!r) this.log.warn({ hook, value: String(v).slice(0, 200) }, 'script returned a reply without a valid SMTP code; using the default');
    return r;
  }

  private params(v: LuaValue | undefined, fallback: Record<string, string>): Record<string, string> {
    if (!v || typeof v !== 'object' || Array.isArray(v) || Buffer.isBuffer(v)) return fallback;
    const out: Record<string, string> = {};
    for (const [k, val] of Object.entries(v)) {
      if (typeof val === 'string' || typeof val === 'number') out[k.toUpperCase()] = String(val);
      else if (val === true) out[k.toUpperCase()] = '';
    }
    return out;
  }

  start(): Reply | null {
    const r = this.call('Start', []);
    return r ? this.toReply('Start', r[0]) : null;
  }

  rblResults(): Reply | null {
    const r = this.call('RBLResults', []);
    return r ? this.toReply('RBLResults', r[0]) : null;
  }

  maxMessageSize(host: string, current: number): number {
    const r = this.call('GetMaxMessageSize', [host, current]);
    const v = r?.[0];
    return typeof v === 'number' && v >= 0 ? Math.floor(v) : current;
  }

  ehloCapabilities(host: string, caps: string[]): string[] {
    const r = this.call('GetEHLOCapabilities', [host, caps.join('\r\n')]);
    const v = r?.[0];
    if (typeof v !== 'string') return caps;
    return v
      .split(/\r?\n/)
      .map((l) => l.replace(/^250[ -]/, '').trim())
      .filter(Boolean);
  }

  helo(host: string, refuse: boolean, ehlo: boolean): { refuse: boolean; reply: Reply | null } {
    const r = this.call('DoHELO', [host, refuse, ehlo]);
    if (!r) return { refuse, reply: null };
    return { refuse: r.length ? luaBool(r[0]) : refuse, reply: this.toReply('DoHELO', r[1]) };
  }

  help(lines: string[]): string[] {
    const r = this.call('DoHELP', [lines.join('\r\n')]);
    const v = r?.[0];
    if (typeof v !== 'string' || v === '') return lines;
    return v.split(/\r?\n/).filter((l, i, a) => l !== '' || i < a.length - 1);
  }

  simple(command: 'QUIT' | 'NOOP' | 'RSET'): Reply | null {
    const hook = `Do${command}`;
    const r = this.call(hook, []);
    return r ? this.toReply(hook, r[0]) : null;
  }

  verify(command: 'VRFY' | 'EXPN', recipients: string[], current: Reply): Reply {
    const hook = `Do${command}`;
    const currentText = current.lines.map((l, i) => `${current.code}${i === current.lines.length - 1 ? ' ' : '-'}${current.enhanced ? `${current.enhanced} ` : ''}${l}`).join('\r\n');
    const r = this.call(hook, [recipients, currentText]);
    return (r && this.toReply(hook, r[0])) ?? current;
  }

  mailFrom(data: string, address: string, params: Record<string, string>, spf: string, authSender: string) {
    const r = this.call('DoMAILFROM', [data, address, params, spf, authSender]);
    if (!r) return { params, reply: null };
    return { params: this.params(r[0], params), reply: this.toReply('DoMAILFROM', r[1]) };
  }

  rcptTo(data: string, address: string, params: Record<string, string>, recipients: string[]) {
    const r = this.call('DoRCPTTO', [data, address, params, recipients]);
    if (!r) return { params, reply: null };
    return { params: this.params(r[0], params), reply: this.toReply('DoRCPTTO', r[1]) };
  }

  dataStart(recipients: string[]): { reply: Reply | null; headers: string[] } {
    const r = this.call('DoDATAStart', [recipients]);
    if (!r) return { reply: null, headers: [] };
    const h = r[1];
    let headers: string[] = [];
    if (typeof h === 'string') headers = h.split(/\r?\n/);
    else if (Array.isArray(h)) headers = h.filter((x): x is string => typeof x === 'string').flatMap((x) => x.split(/\r?\n/));
    // A header line may not be empty (it would end the header) or carry control characters.
    headers = headers.map((x) => x.replace(/[\x00-\x08\x0a-\x1f\x7f]/g, '')).filter((x) => x.trim() !== '');
    return { reply: this.toReply('DoDATAStart', r[0]), headers };
  }

  unrecognised(line: string): Reply | null {
    const r = this.call('DoUnrecognised', [line]);
    return r ? this.toReply('DoUnrecognised', r[0]) : null;
  }

  startMessage(): void {
    this.call('StartMessage', []);
  }

  /** One MessageLineRaw call (for the traced path). */
  private messageLineRaw(line: Buffer): void {
    this.call('MessageLineRaw', [line], false, true);
  }

  /** One MessageLine call (for the traced path). */
  private messageLine(line: Buffer): Buffer | false | null {
    const r = this.call('MessageLine', [line], true, true);
    if (!r || r.length === 0 || r[0] === null) return null;
    const v = r[0];
    if (v === false) return false;
    if (Buffer.isBuffer(v)) return v;
    if (typeof v === 'number') return Buffer.from(String(v));
    return null;
  }

  messageLines(block: Buffer[], count: number, dotted: number[]): (Buffer | false | null)[] | null {
    // The test bench traces every call, so it gets them one by one.
    if (this.trace || !this.helpers) {
      let d = 0;
      const outs = splitLines(block).map((line, i) => {
        const raw = dotted[d] === i ? (d++, Buffer.concat([DOT, line])) : line;
        this.messageLineRaw(raw);
        return this.messageLine(line);
      });
      return outs.some((o) => o !== null) ? outs : null;
    }
    if (this.off) return null;
    // A raw line is sent only where it differs from the line (dot-stuffed).
    const rawOnly: LuaValue[] = [];
    if (dotted.length && this.defined.has('MessageLineRaw')) {
      const lines = splitLines(block);
      for (const i of dotted) {
        while (rawOnly.length < i) rawOnly.push(null);
        rawOnly.push(Buffer.concat([DOT, lines[i]]));
      }
    }
    if (!this.synced) this.setGlobals();
    if (!this.quiet) this.restored = false;
    // The lines reach Lua as a table the VM makes from the staged block (line-table.ts).
    this.state.vm.stageLines(block, count);
    const t0 = performance.now();
    const r = this.state.callRef(this.helpers.lines, [rawOnly], this.budget, true);
    const each = (performance.now() - t0) / count;
    for (const hook of LINE_HOOKS) {
      if (this.defined.has(hook)) this.metrics.recordMany(hook, r.kind, each, count);
    }
    if (r.kind === 'stopped') {
      this.off = true;
      this.forget();
      this.log.warn({ hook: 'MessageLine', stop: r.stop, err: r.message }, 'script stopped; switched off for this session');
      throw new ScriptStopped('MessageLine', r.message);
    }
    if (r.kind !== 'ok') {
      if (r.kind === 'error') this.log.warn({ hook: 'MessageLine', err: r.message }, 'script error');
      return null;
    }
    const [out, errs] = r.values;
    if (Array.isArray(errs)) {
      for (let j = 0; j + 1 < errs.length; j += 2) {
        const hook = String(errs[j]);
        const err = String(errs[j + 1]);
        // A script failing on every line is counted in full, but only the first few errors of
        // a batch are logged and reach the console's feed.
        this.metrics.failed(hook, 'error', err, j >= 20);
        if (j < 20) this.log.warn({ hook, err }, 'script error');
      }
    }
    if (!Array.isArray(out) || out.length === 0) return null;
    const results: (Buffer | false | null)[] = new Array<Buffer | false | null>(count).fill(null);
    for (let j = 0; j + 1 < out.length; j += 2) {
      const i = out[j];
      const v = out[j + 1];
      if (typeof i !== 'number' || i < 1 || i > count) continue;
      if (v === false) results[i - 1] = false;
      else if (Buffer.isBuffer(v)) results[i - 1] = v;
      else if (typeof v === 'number') results[i - 1] = Buffer.from(String(v));
    }
    return results.some((o) => o !== null) ? results : null;
  }

  endMessage(): Reply | null {
    const r = this.call('EndMessage', []);
    return r ? this.toReply('EndMessage', r[0]) : null;
  }

  checkRecipients(a: RecipientView & { ip: string; locallySent: boolean; size: number }): Reply | null {
    const r = this.call('CheckRecipients', [a.recipients, a.to, a.cc, a.bcc, a.ip, a.authSender, a.sender, a.subject, a.locallySent, a.size]);
    return r ? this.toReply('CheckRecipients', r[0]) : null;
  }

  processMessage(a: ProcessMessageArgs): ProcessActions | null {
    const actions = { SendToOriginalRecipients: true, Delete: false, Ignore: false, Reason: '', Recipients: [], HeaderModifiers: [] };
    const r = this.call('ProcessMessage', [a.mailFrom, a.subject, a.recipients, actions, a.structure, a.size, a.attachments]);
    const v = r?.[0];
    if (!v || typeof v !== 'object' || Array.isArray(v) || Buffer.isBuffer(v)) return null;
    const t = v as Record<string, LuaValue>;
    return {
      sendToOriginalRecipients: t.SendToOriginalRecipients === undefined ? true : luaBool(t.SendToOriginalRecipients),
      delete: luaBool(t.Delete ?? false),
      ignore: luaBool(t.Ignore ?? false),
      reason: typeof t.Reason === 'string' ? t.Reason : '',
      // Addresses as RCPT TO gives them, with or without <>; empty entries mean nothing.
      recipients: strings(t.Recipients)
        .map((x) => x.trim().replace(/^<(.*)>$/, '$1'))
        .filter(Boolean),
      headerModifiers: strings(t.HeaderModifiers),
    };
  }

  monitorBcc(recipients: string[], bcc: string[], sender: string, authSender: string, subject: string, monitor: string): string | null {
    const r = this.call('MonitorBcc', [recipients, bcc, sender, authSender, subject, monitor]);
    if (!r) return null;
    return typeof r[0] === 'string' ? r[0] : '';
  }

  logRecipients(a: RecipientView): void {
    this.call('LogRecipients', [a.recipients, a.to, a.cc, a.bcc, a.sender, a.authSender, a.subject]);
  }

  logRecipientsBlocked(blocked: string[], reason: string, sender: string, authSender: string, subject: string): void {
    this.call('LogRecipientsBlocked', [blocked, reason, sender, authSender, subject]);
  }

  /**
   * The message the VPOP3.GetMessage* helpers read: set it just before ProcessMessage and
   * clear it (null) right after, so the helpers raise a Lua error in every other callback.
   */
  setMessageContext(ctx: MessageContext | null): void {
    vpop3Library(this.state)?.setMessage(ctx);
  }

  /** End() once, then the state is released. */
  end(): void {
    try {
      this.call('End', []);
    } catch {
      /* a runaway End has nothing left to answer */
    } finally {
      this.release(this.state);
    }
  }
}
