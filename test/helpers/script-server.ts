import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, type Harness, type HarnessOptions } from './harness.js';
import type { HookStats } from '../../src/script/metrics.js';

export interface ScriptHarness extends Harness {
  /** Writes SMTPSVR.LUA and reloads it; the next connection gets this version. */
  setScript(source: string): Promise<void>;
  /** Writes another file (a module for require) into the scripts folder. */
  writeScriptFile(name: string, source: string): Promise<void>;
  /** The per-hook counters, or zeros for a hook never called. */
  hookStats(hook: string): HookStats;
  /** Waits until `hook` has been called at least `calls` times in all (End runs after the close). */
  waitHookCalls(hook: string, calls: number, timeoutMs?: number): Promise<HookStats>;
}

/** A real server whose scripts folder holds `script` as SMTPSVR.LUA before it starts. */
export async function startScriptServer(script: string, opts: HarnessOptions = {}, files: Record<string, string> = {}): Promise<ScriptHarness> {
  const dataDir = await mkdtemp(join(tmpdir(), 'moonpost-script-'));
  const scripts = join(dataDir, 'scripts');
  await mkdir(scripts, { recursive: true });
  await writeFile(join(scripts, 'SMTPSVR.LUA'), script);
  for (const [name, text] of Object.entries(files)) await writeFile(join(scripts, name), text);
  const h = await startServer(opts, dataDir);
  const hookStats = (hook: string): HookStats => h.server.scripts.metrics.snapshot()[hook] ?? { calls: 0, errors: 0, stops: 0, totalMs: 0 };
  return {
    ...h,
    async stop() {
      await h.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
    async setScript(source: string) {
      await writeFile(join(scripts, 'SMTPSVR.LUA'), source);
      await h.server.scripts.reload();
    },
    async writeScriptFile(name: string, source: string) {
      await writeFile(join(scripts, name), source);
    },
    hookStats,
    async waitHookCalls(hook: string, calls: number, timeoutMs = 3000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const s = hookStats(hook);
        if (s.calls >= calls) return s;
        if (Date.now() > deadline) throw new Error(`${hook} called ${s.calls} times, expected ${calls}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
  };
}

/** Lua source for a string literal holding the bytes of `s` (latin1), every byte escaped. */
export function luaString(s: string): string {
  return `"${[...Buffer.from(s, 'latin1')].map((b) => `\\${String(b).padStart(3, '0')}`).join('')}"`;
}
