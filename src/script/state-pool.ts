import type { CompiledScript } from './compile.js';
import type { LuaVm } from './lua-vm.js';
import type { LuaState, StateTemplate } from './lua-state.js';
import type { HooksSetup } from './smtpsvr-hooks.js';
import { vpop3Library } from './vpop3-lib.js';

/** The most states alive with a template at once: each holds its region and a copy of it. */
const TEMPLATES_MAX = 64;
/** The region of a script version's first state, before its size is known. */
const FIRST_REGION = 256 * 1024;
/** Room above a template's size, for the states built after it. */
const REGION_SLACK = 2048;

interface Kept {
  template: StateTemplate;
  setup: HooksSetup;
  script: CompiledScript;
}

/**
 * SMTPSVR.LUA states that are made once and then restored for each new session, instead of
 * being made again (libraries, sandbox, VPOP3 helpers, the script's main chunk, the session
 * helpers: most of what a script costs a short session).
 *
 * A state is built in one region of the wasm heap (LuaVm.newState) and, just before its first
 * session begins, copied (LuaState.keep); when that session ends, the copy is written back
 * (LuaState.restore), which leaves the state byte for byte as it was made, as S2's fresh state
 * per connection wants: nothing a session did (globals, upvalues, tables, coroutines, memory)
 * reaches the next. Only math.random gets a new seed. A script version whose main chunk calls
 * a host function (print, require, the VPOP3 helpers) or asks the time or a random number
 * (os.time, os.clock, os.date, math.random, math.randomseed) gets no templates: what that did
 * once would be fixed for every session, so each of its sessions runs the main chunk again.
 *
 * At most TEMPLATES_MAX states are kept so (in use or ready); the others are made and closed
 * as before. A state goes back only to the version and VM current when its session ends.
 */
export class StatePool {
  private readonly kept = new Map<LuaState, Kept>();
  /** Restored states of `readyScript`, for the next sessions. */
  private ready: LuaState[] = [];
  private readyScript: CompiledScript | null = null;
  /** Region size per script version: 0 once it cannot have templates. */
  private readonly regionOf = new WeakMap<CompiledScript, number>();
  private stopped = false;

  /** The region to build a new state of `script` in; 0 for none. */
  regionFor(script: CompiledScript): number {
    if (this.stopped || this.kept.size >= TEMPLATES_MAX) return 0;
    return this.regionOf.get(script) ?? FIRST_REGION;
  }

  /**
   * Keeps `state`, just made for `script` in a region and before its session begins, as a
   * template, unless its main chunk was not `pure` or it outgrew its region.
   */
  keep(state: LuaState, script: CompiledScript, setup: HooksSetup, pure: boolean): void {
    const template = pure ? state.keep() : null;
    if (!template) {
      this.regionOf.set(script, 0);
      return;
    }
    this.regionOf.set(script, template.snap.region.length + REGION_SLACK);
    this.kept.set(state, { template, setup, script });
  }

  /** A restored state of `script` in `vm` and its hooks' setup, or null. */
  take(script: CompiledScript, vm: LuaVm): { state: LuaState; setup: HooksSetup } | null {
    if (this.readyScript !== script) this.drain();
    for (let state = this.ready.pop(); state; state = this.ready.pop()) {
      if (state.vm === vm) return { state, setup: this.kept.get(state)!.setup };
      this.close(state);
    }
    return null;
  }

  /** The end of a session: its state is restored for the next one, or closed. */
  release(state: LuaState, current: CompiledScript | null, vm: LuaVm | null): void {
    const k = this.kept.get(state);
    if (!k || this.stopped || k.script !== current || state.vm !== vm) return this.close(state);
    state.restore(k.template);
    vpop3Library(state)?.setMessage(null);
    if (this.readyScript !== k.script) {
      this.drain();
      this.readyScript = k.script;
    }
    this.ready.push(state);
  }

  /** Closes the ready states; those in use close when their sessions end. */
  stop(): void {
    this.stopped = true;
    this.drain();
  }

  private drain(): void {
    for (const state of this.ready) this.close(state);
    this.ready = [];
    this.readyScript = null;
  }

  private close(state: LuaState): void {
    this.kept.delete(state);
    state.close();
  }
}
