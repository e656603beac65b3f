import { isUtf8 } from 'node:buffer';
import { mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { findCaseInsensitive } from '../script/script-store.js';

export type ScriptKind = 'smtpsvr' | 'relayout' | 'module';

/** `SMTPSVR.LUA`, `relayout.lua` or a module `name.lua` for require(): no folders, no dot files. */
const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}\.lua$/i;
/** History version ids: the UTC time of the save, `YYYYMMDDTHHMMSSmmmZ`, maybe `-n`. */
const VERSION = /^\d{8}T\d{9}Z(-\d+)?$/;

export class ScriptFileError extends Error {
  constructor(
    readonly status: 400 | 404 | 422,
    message: string,
  ) {
    super(message);
    this.name = 'ScriptFileError';
  }
}

export function scriptKind(name: string): ScriptKind {
  const lower = name.toLowerCase();
  if (lower === 'smtpsvr.lua') return 'smtpsvr';
  if (lower === 'relayout.lua') return 'relayout';
  return 'module';
}

export function checkName(name: string): string {
  if (!NAME.test(name) || name.includes('..')) throw new ScriptFileError(400, `"${name}" is not a script name (letters, digits, _ . -, ending in .lua)`);
  return name;
}

/** Text for the API: UTF-8 when the bytes are UTF-8, else Latin-1 (every byte kept). */
export function decode(bytes: Buffer): { source: string; encoding: 'utf8' | 'latin1' } {
  return isUtf8(bytes) ? { source: bytes.toString('utf8'), encoding: 'utf8' } : { source: bytes.toString('latin1'), encoding: 'latin1' };
}

export function encode(source: string, encoding: 'utf8' | 'latin1' = 'utf8'): Buffer {
  return Buffer.from(source, encoding);
}

export interface ScriptInfo {
  name: string;
  kind: ScriptKind;
  size: number;
  modified: string;
  versions: number;
}

export interface HistoryEntry {
  id: string;
  saved: string;
  size: number;
}

const stamp = (d: Date): string => d.toISOString().replace(/[-:.]/g, '');
const savedAt = (id: string): string => {
  const m = /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)(\d{3})Z/.exec(id)!;
  return `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}.${m[7]}Z`;
};

/**
 * The scripts folder as the console edits it: list, read, save (keeping the version it
 * replaces under `.history/<name>/<time>.lua`), and the history of each script. Names match
 * case-insensitively, as the script store finds them. Saves of one script run one at a time.
 */
export class ScriptFiles {
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(readonly dir: string) {}

  private historyDir(name: string): string {
    return join(this.dir, '.history', name.toLowerCase());
  }

  /** The existing file for `name` (any case), or null. */
  find(name: string): string | null {
    return findCaseInsensitive(this.dir, checkName(name));
  }

  async list(): Promise<ScriptInfo[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return [];
    }
    const out: ScriptInfo[] = [];
    for (const name of names.filter((n) => NAME.test(n)).sort()) {
      const st = await stat(join(this.dir, name)).catch(() => null);
      if (!st?.isFile()) continue;
      out.push({ name, kind: scriptKind(name), size: st.size, modified: st.mtime.toISOString(), versions: (await this.history(name)).length });
    }
    const order: Record<ScriptKind, number> = { smtpsvr: 0, relayout: 1, module: 2 };
    return out.sort((a, b) => order[a.kind] - order[b.kind] || (a.name < b.name ? -1 : 1));
  }

  async read(name: string): Promise<{ name: string; bytes: Buffer; modified: string }> {
    const path = this.find(name);
    if (!path) throw new ScriptFileError(404, `no script ${name}`);
    const [bytes, st] = await Promise.all([readFile(path), stat(path)]);
    return { name: path.slice(this.dir.length + 1), bytes, modified: st.mtime.toISOString() };
  }

  /**
   * Writes `bytes` as the script (replacing the file atomically) after keeping the current
   * version in the history. Returns the file name used and the history id of the replaced
   * version (null when there was none, or it was the same).
   */
  save(name: string, bytes: Buffer): Promise<{ name: string; archived: string | null }> {
    return this.locked(name, async () => {
      const existing = this.find(name);
      let archived: string | null = null;
      if (existing) {
        const old = await readFile(existing);
        if (old.equals(bytes)) return { name: existing.slice(this.dir.length + 1), archived: null };
        archived = await this.archive(name, old);
      }
      const path = existing ?? join(this.dir, checkName(name));
      await mkdir(this.dir, { recursive: true });
      const tmp = join(this.dir, `.${process.pid}.${Date.now()}.tmp`);
      await writeFile(tmp, bytes);
      await rename(tmp, path);
      return { name: path.slice(this.dir.length + 1), archived };
    });
  }

  private async archive(name: string, bytes: Buffer): Promise<string> {
    const dir = this.historyDir(name);
    await mkdir(dir, { recursive: true });
    const base = stamp(new Date());
    for (let n = 0; ; n++) {
      const id = n ? `${base}-${n}` : base;
      try {
        await writeFile(join(dir, `${id}.lua`), bytes, { flag: 'wx' });
        return id;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    }
  }

  /** Earlier versions, newest first. */
  async history(name: string): Promise<HistoryEntry[]> {
    const dir = this.historyDir(checkName(name));
    let files: string[];
    try {
      files = await readdir(dir);
    } catch {
      return [];
    }
    const out: HistoryEntry[] = [];
    for (const f of files) {
      const id = f.slice(0, -4);
      if (!f.endsWith('.lua') || !VERSION.test(id)) continue;
      const st = await stat(join(dir, f)).catch(() => null);
      if (st) out.push({ id, saved: savedAt(id), size: st.size });
    }
    // Same millisecond: -1 after the plain stamp, -2 after -1.
    const key = (id: string): [string, number] => [id.split('-')[0], Number(id.split('-')[1] ?? 0)];
    return out.sort((a, b) => {
      const [ka, na] = key(a.id);
      const [kb, nb] = key(b.id);
      return ka === kb ? nb - na : ka < kb ? 1 : -1;
    });
  }

  async version(name: string, id: string): Promise<Buffer> {
    if (!VERSION.test(id)) throw new ScriptFileError(400, `"${id}" is not a version id`);
    try {
      return await readFile(join(this.historyDir(checkName(name)), `${id}.lua`));
    } catch {
      throw new ScriptFileError(404, `no version ${id} of ${name}`);
    }
  }

  private locked<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const key = name.toLowerCase();
    const prev = this.locks.get(key) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const settled = run.catch(() => undefined);
    this.locks.set(key, settled);
    void settled.then(() => {
      if (this.locks.get(key) === settled) this.locks.delete(key);
    });
    return run;
  }
}
