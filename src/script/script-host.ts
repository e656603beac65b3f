import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { SessionFacts, SessionPolicy } from '../smtp/hooks.js';
import { LuaVm } from './lua-vm.js';
import { LuaState, type CallBudget, type CallResult, type LuaValue } from './lua-state.js';
import { ScriptStore, findCaseInsensitive } from './script-store.js';
import { ScriptHooks } from './smtpsvr-hooks.js';
import { StatePool } from './state-pool.js';
import { RelayoutRun, type RunSettings } from './relayout-hooks.js';
import { ScriptMetrics } from './metrics.js';
import { readFileSync } from 'node:fs';
import type { CompiledScript } from './compile.js';
import { installVpop3Library } from './vpop3-lib.js';

/** States per WebAssembly instance before a fresh one is opened, so memory can be given back. */
const STATES_PER_VM = 5000;

/** `require("name")` in Lua, backed by a host function that reads `name.lua` (S1). */
const REQUIRE_SHIM = `
do
  local source = __moonpost_source
  __moonpost_source = nil
  local loaded = {}
  require = function(name)
    if type(name) ~= 'string' then error('require expects a module name', 2) end
    if loaded[name] ~= nil then return loaded[name] end
    local text = source(name)
    local chunk, err = load(text, '@' .. name .. '.lua', 't')
    if not chunk then error(err, 2) end
    local r = chunk(name)
    if r == nil then r = true end
    loaded[name] = r
    return r
  end
end
`;

/**
 * The script host: one Lua VM (renewed every few thousand states), the SMTPSVR.LUA store,
 * budgets from the configuration, and per-hook metrics. Each SMTP session gets a fresh state
 * of the script version current when it was accepted (S2).
 */
export class ScriptHost {
  private vm: LuaVm | null = null;
  private nextVm: Promise<LuaVm> | null = null;
  smtpsvr: ScriptStore | null = null;
  relayout: ScriptStore | null = null;
  readonly metrics = new ScriptMetrics();
  readonly budget: CallBudget;
  private readonly memoryLimit: number;
  /** Also receives every `print` line of a script (the script test bench), besides the log. */
  printSink: ((text: string) => void) | null = null;
  /** SMTPSVR.LUA states kept to be restored for new sessions. */
  private readonly pool = new StatePool();
  /** The log of the session a kept state serves now (its `print` was defined for the first). */
  private readonly sessionLog = new WeakMap<LuaState, Logger>();
  private readonly releaseState = (state: LuaState): void => this.pool.release(state, this.smtpsvr?.current ?? null, this.vm);

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
  ) {
    const s = config.scripts;
    this.budget = { timeMs: s.timeMs, instructions: s.instructions || Infinity };
    this.memoryLimit = s.memoryMB * 1024 * 1024;
  }

  get dir(): string {
    return this.config.scripts.dir!;
  }

  async start(): Promise<void> {
    this.vm = await LuaVm.create();
    this.smtpsvr = new ScriptStore(this.dir, 'SMTPSVR.LUA', this.vm, this.log.child({ part: 'scripts' }));
    await this.smtpsvr.start();
    this.relayout = new ScriptStore(this.dir, 'relayout.lua', this.vm, this.log.child({ part: 'scripts' }));
    await this.relayout.start();
  }

  /** Opens the Lua VM without watching a scripts folder (the script test bench). */
  async openVm(): Promise<LuaVm> {
    this.vm ??= await LuaVm.create();
    return this.vm;
  }

  stop(): void {
    this.smtpsvr?.stop();
    this.relayout?.stop();
    this.pool.stop();
  }

  /** Re-reads the scripts (SIGHUP). */
  reload(): Promise<void> {
    return Promise.all([this.smtpsvr?.reload(), this.relayout?.reload()]).then(() => undefined);
  }

  private currentVm(): LuaVm {
    const vm = this.vm!;
    if (vm.statesCreated >= STATES_PER_VM && !this.nextVm) {
      this.nextVm = LuaVm.create().then((fresh) => {
        this.vm = fresh;
        this.nextVm = null;
        return fresh;
      });
    }
    return vm;
  }

  /** A fresh state with the sandbox, `print`, `require`, the VPOP3 helpers and the script loaded and run. */
  newState(script: CompiledScript, log: Logger): LuaState | null {
    return this.buildState(script, log, 0)?.state ?? null;
  }

  /**
   * newState, in a region of `region` bytes when not 0 (see StatePool); `pure` says whether the
   * main chunk called no host function and asked neither the time nor a random number.
   */
  private buildState(script: CompiledScript, log: Logger, region: number): { state: LuaState; pure: boolean } | null {
    let state: LuaState;
    try {
      state = new LuaState(this.currentVm(), this.memoryLimit, script.chunkName, region);
    } catch (err) {
      log.error({ err: (err as Error).message }, 'cannot create a Lua state');
      return null;
    }
    const scriptName = script.chunkName.slice(1);
    state.define('print', (s, args) => {
      const out = args.map(luaToText).join('\t');
      (this.sessionLog.get(s) ?? log).info({ script: scriptName, out }, 'script print');
      this.printSink?.(out);
      return [];
    });
    state.define('__moonpost_source', (_s, args) => [this.moduleSource(String(args[0] ?? ''))]);
    // The VPOP3 helpers; a part or decoded body may take at most a quarter of the state's memory.
    installVpop3Library(state, { maxBytes: Math.floor(this.memoryLimit / 4) });
    const shim = state.runInternal(REQUIRE_SHIM, '=require');
    let main = shim;
    let pure = false;
    if (shim.kind === 'ok') {
      const calls = state.hostCalls;
      const run = (): CallResult => state.loadAndRun(script.bytecode, script.chunkName, 'b', this.budget);
      if (region > 0) {
        const watched = state.watching(run);
        main = watched.result;
        pure = !watched.called && state.hostCalls === calls;
      } else main = run();
    }
    if (main.kind !== 'ok') {
      const message = main.kind === 'absent' ? 'no main chunk' : main.message;
      this.metrics.record('(main chunk)', main.kind === 'stopped' ? 'stopped' : 'error', 0, main.kind === 'absent' ? 'no main chunk' : main.message);
      log.warn({ script: scriptName, err: message }, 'script failed to start; running without it');
      state.close();
      return null;
    }
    return { state, pure };
  }

  private moduleSource(name: string): string {
    if (!/^[A-Za-z0-9_.-]+$/.test(name) || name.includes('..')) throw new Error(`bad module name "${name}"`);
    const path = findCaseInsensitive(this.dir, `${name}.lua`);
    if (!path) throw new Error(`module '${name}' not found in the scripts folder`);
    return readFileSync(path, 'latin1');
  }

  /** relayout.lua for one send run (R2): a fresh state when the script exists, else defaults. */
  relayoutRun(sender: { id: number; name: string }, settings: RunSettings, log: Logger): RelayoutRun {
    const script = this.relayout?.current;
    const state = script ? this.newState(script, log) : null;
    return new RelayoutRun(state, sender.id, sender.name, settings, this.budget, log, this.metrics);
  }

  /** SMTPSVR.LUA hooks for a new session, or null when there is no script. */
  sessionHooks(policy: SessionPolicy, facts: () => SessionFacts, log: Logger): ScriptHooks | null {
    const script = this.smtpsvr?.current;
    return script ? this.hooksForScript(script, policy, facts, log) : null;
  }

  /** Hooks running one given script version for a session; null when its main chunk fails. */
  hooksForScript(script: CompiledScript, policy: SessionPolicy, facts: () => SessionFacts, log: Logger): ScriptHooks | null {
    const release = this.releaseState;
    const kept = this.vm && this.pool.take(script, this.vm);
    if (kept) {
      this.sessionLog.set(kept.state, log);
      return new ScriptHooks(kept.state, policy, facts, this.budget, log, this.metrics, { made: kept.setup, release, globals: script.globals });
    }
    const region = this.pool.regionFor(script);
    const built = this.buildState(script, log, region);
    if (!built) return null;
    const hooks = new ScriptHooks(built.state, policy, facts, this.budget, log, this.metrics, { release, globals: script.globals });
    if (region > 0) this.pool.keep(built.state, script, hooks.setup, built.pure);
    return hooks;
  }
}

function luaToText(v: LuaValue): string {
  if (v === null) return 'nil';
  if (Buffer.isBuffer(v)) return v.toString('latin1');
  if (typeof v === 'object') return Array.isArray(v) ? `table(${v.length})` : 'table';
  return String(v);
}

