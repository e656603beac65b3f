import { readdirSync, watch, type FSWatcher } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { compileScript, type CompiledScript } from './compile.js';
import type { LuaVm } from './lua-vm.js';

/** Finds `name` in `dir` ignoring case, as VPOP3 on Windows does. */
export function findCaseInsensitive(dir: string, name: string): string | null {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return null;
  }
  const want = name.toLowerCase();
  const hit = names.filter((n) => n.toLowerCase() === want).sort()[0];
  return hit ? join(dir, hit) : null;
}

/**
 * The current version of one script (`SMTPSVR.LUA` or `relayout.lua`) in the scripts folder.
 * It is compiled once per version; a new version with a syntax error is logged and the last
 * good version keeps running. Reloads on a change in the folder and on `reload()` (SIGHUP).
 */
export class ScriptStore {
  private compiled: CompiledScript | null = null;
  private watcher: FSWatcher | null = null;
  private reloading: Promise<void> = Promise.resolve();
  private debounce: NodeJS.Timeout | null = null;
  version = 0;

  constructor(
    readonly dir: string,
    readonly name: string,
    private readonly vm: LuaVm,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    await this.reload();
    try {
      this.watcher = watch(this.dir, () => {
        if (this.debounce) clearTimeout(this.debounce);
        this.debounce = setTimeout(() => void this.reload(), 50);
      });
      this.watcher.on('error', (err) => this.log.warn({ err: err.message, dir: this.dir }, 'script folder watch failed; use SIGHUP to reload'));
    } catch (err) {
      this.log.warn({ err: (err as Error).message, dir: this.dir }, 'cannot watch the script folder; use SIGHUP to reload');
    }
  }

  /** The version new sessions get; null when there is no script. */
  get current(): CompiledScript | null {
    return this.compiled;
  }

  reload(): Promise<void> {
    this.reloading = this.reloading.then(() => this.load());
    return this.reloading;
  }

  private async load(): Promise<void> {
    const path = findCaseInsensitive(this.dir, this.name);
    if (!path) {
      if (this.compiled) this.log.info({ script: this.name }, 'script removed');
      this.compiled = null;
      return;
    }
    let source: Buffer;
    try {
      source = await readFile(path);
    } catch (err) {
      this.log.error({ script: path, err: (err as Error).message }, 'cannot read script; keeping the previous version');
      return;
    }
    if (this.compiled && this.compiled.source.equals(source)) return;
    const result = compileScript(this.vm, source, path);
    if ('error' in result) {
      this.log.error({ script: path, err: result.error }, 'script has a syntax error; keeping the previous version');
      return;
    }
    this.version++;
    this.compiled = { ...result, version: this.version };
    this.log.info({ script: path, version: this.version }, 'script loaded');
  }

  stop(): void {
    this.watcher?.close();
    this.watcher = null;
    if (this.debounce) clearTimeout(this.debounce);
  }
}
