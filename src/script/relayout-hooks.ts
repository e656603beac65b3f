import type { Logger } from 'pino';
import type { CallBudget, LuaState, LuaValue } from './lua-state.js';
import type { ScriptMetrics } from './metrics.js';
import { luaBool } from './smtpsvr-hooks.js';

/** The read/write globals of a send run (R2); 0 means unlimited. */
export interface RunSettings {
  useBATV: boolean;
  maxMessagesPerConnection: number;
  maxRecipientsPerConnection: number;
  maxRecipientsPerMessage: number;
}

export interface CheckFileArgs {
  filename: string;
  size: number;
  /** Local time of queueing as YYYYMMDDHHMMSS (R5). */
  creationTime: string;
  returnPath: string;
  recipients: string[];
  /** Field → unfolded value of its first occurrence; looked up case-insensitively. */
  headerData: Record<string, string>;
  headerLines: string[];
}

export interface FileActions {
  skipSend: boolean;
  priority: number;
  reason: string;
}

const SETTINGS: [string, keyof RunSettings][] = [
  ['UseBATV', 'useBATV'],
  ['MaxMessagesPerConnection', 'maxMessagesPerConnection'],
  ['MaxRecipientsPerConnection', 'maxRecipientsPerConnection'],
  ['MaxRecipientsPerMessage', 'maxRecipientsPerMessage'],
];

/**
 * Calls CheckFile with a case-insensitive HeaderData table (R5): `HeaderData['subject']`
 * finds Subject. A function made inside the state (the metatable must be), kept in the
 * registry, not as a global: it is set up after the script's main chunk, which may have
 * trapped _G, and a global read or write there would run the trap outside any budget.
 */
const CHECKFILE_TRAMPOLINE = `
local P, G = ...
local rawget, next, type, setmetatable, lower = P.rawget, P.next, P.type, P.setmetatable, P.lower
return function(f, a, size, ctime, rp, rcpts, hd, hl)
  local folded = {}
  for k, v in next, hd do
    if type(k) == 'string' then folded[lower(k)] = v end
  end
  setmetatable(hd, { __index = function(_, k)
    if type(k) == 'string' then return folded[lower(k)] end
  end })
  return rawget(G, 'CheckFile')(f, a, size, ctime, rp, rcpts, hd, hl)
end
`;

/**
 * relayout.lua for one send run of one sender (R2): a fresh state with `senderid`,
 * `sendername` and the settings as globals, then Start, CheckFile per due message,
 * ServerConnected per connection and ReturnCodeHandler per reply. A failing callback acts as
 * absent; one over its budget switches the script off for the rest of the run (S4).
 */
export class RelayoutRun {
  private off = false;
  /** The read-only ConnectedServer: "" until the first connection of the run. */
  private connected = '';
  /** Registry reference of CHECKFILE_TRAMPOLINE's function; null when it could not be set up. */
  private readonly checkFileRef: number | null = null;

  constructor(
    private readonly state: LuaState | null,
    readonly senderId: number,
    readonly senderName: string,
    readonly settings: RunSettings,
    private readonly budget: CallBudget,
    private readonly log: Logger,
    private readonly metrics: ScriptMetrics,
  ) {
    if (!state) return;
    state.setGlobal('senderid', senderId);
    state.setGlobal('sendername', senderName);
    state.setGlobal('ConnectedServer', '');
    this.pushSettings();
    this.checkFileRef = state.internalFunctions(CHECKFILE_TRAMPOLINE, '=checkfile')?.[0] ?? null;
  }

  get active(): boolean {
    return !!this.state && !this.off;
  }

  private pushSettings(): void {
    for (const [g, k] of SETTINGS) this.state!.setGlobal(g, this.settings[k]);
  }

  private readSettings(): void {
    const s = this.settings as unknown as Record<string, LuaValue>;
    for (const [g, k] of SETTINGS) {
      const v = this.state!.getGlobal(g);
      if (typeof s[k] === 'boolean') s[k] = luaBool(v);
      else if (typeof v === 'number' && Number.isFinite(v)) s[k] = Math.max(0, Math.floor(v));
    }
  }

  /** Calls the script's `hook`, or the internal function `ref` (for the metrics, `hook`). */
  private call(hook: string, args: LuaValue[], ref?: number): LuaValue[] | null {
    if (!this.active) return null;
    // Read-only globals are restored before every callback (S7).
    this.state!.setGlobal('senderid', this.senderId);
    this.state!.setGlobal('sendername', this.senderName);
    this.state!.setGlobal('ConnectedServer', this.connected);
    const t0 = performance.now();
    const r = ref === undefined ? this.state!.call(hook, args, this.budget) : this.state!.callRef(ref, args, this.budget);
    this.metrics.record(`relayout.${hook}`, r.kind, performance.now() - t0, 'message' in r ? r.message : undefined);
    if (r.kind === 'ok') {
      this.readSettings();
      return r.values;
    }
    if (r.kind === 'absent') return null;
    this.pushSettings();
    if (r.kind === 'stopped') {
      this.off = true;
      this.log.warn({ hook, sender: this.senderId, stop: r.stop, err: r.message }, 'relayout.lua stopped; switched off for this run');
    } else this.log.warn({ hook, sender: this.senderId, err: r.message }, 'relayout.lua error');
    return null;
  }

  start(): void {
    this.call('Start', []);
  }

  checkFile(a: CheckFileArgs): FileActions {
    const actions: FileActions = { skipSend: false, priority: 50, reason: '' };
    if (!this.active || this.checkFileRef === null || !this.state!.hasFunction('CheckFile')) return actions;
    const args: LuaValue[] = [a.filename, { SkipSend: false, Priority: 50, Reason: '' }, a.size, a.creationTime, a.returnPath, a.recipients, a.headerData, a.headerLines];
    const r = this.call('CheckFile', args, this.checkFileRef);
    const v = r?.[0];
    if (!v || typeof v !== 'object' || Array.isArray(v) || Buffer.isBuffer(v)) return actions;
    const t = v as Record<string, LuaValue>;
    actions.skipSend = luaBool(t.SkipSend ?? false);
    if (typeof t.Priority === 'number' && Number.isFinite(t.Priority)) actions.priority = Math.min(100, Math.max(1, Math.round(t.Priority)));
    if (typeof t.Reason === 'string') actions.reason = t.Reason;
    return actions;
  }

  serverConnected(server: string): void {
    if (!this.active) return;
    this.connected = server;
    this.call('ServerConnected', []);
  }

  /** R3: a replacement reply (starting with a code), or null to keep the server's. */
  returnCode(lastCommand: string, fullResponse: string, lastLine: string): string | null {
    const r = this.call('ReturnCodeHandler', [lastCommand, fullResponse, lastLine]);
    const v = r?.[0];
    if (typeof v !== 'string' || !/^[2-5]\d\d([ -]|$)/.test(v)) return null;
    return v;
  }

  close(): void {
    this.state?.close();
  }
}
