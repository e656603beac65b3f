import { readFileSync } from 'node:fs';
import { resolve, dirname, isAbsolute, join } from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { configSchema, type Config, type ConfigInput, type Secret } from './schema.js';
import { embeddedDefaults } from './defaults.js';
import { isPasswordHash } from '../policy/password.js';
import { parseSenderRules } from '../delivery/sender-rules.js';

export class ConfigError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(`${file}: ${message}`);
    this.name = 'ConfigError';
  }
}

function formatIssues(file: string, issues: z.core.$ZodIssue[]): ConfigError {
  const lines = issues.map((i) => {
    const path = i.path.length ? i.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('') : '(top)';
    let msg = i.message;
    if (i.code === 'unrecognized_keys') msg = `unknown key(s) ${i.keys.map((k) => `"${k}"`).join(', ')}`;
    return `  ${path.replace(/^\./, '')}: ${msg}`;
  });
  return new ConfigError(file, `invalid configuration\n${lines.join('\n')}`);
}

/** Validates a parsed config object; `file` names it in errors. Relative paths resolve from `baseDir`. */
export function validateConfig(input: unknown, file: string, baseDir = process.cwd()): Config {
  const result = configSchema.safeParse(input);
  if (!result.success) throw formatIssues(file, result.error.issues);
  const config = result.data;
  const ids = new Set<number>();
  for (const [i, s] of config.services.entries()) {
    if (ids.has(s.id)) throw new ConfigError(file, `services[${i}].id: duplicate service id ${s.id}`);
    ids.add(s.id);
    if (s.tls !== 'none' && (!s.cert || !s.key)) {
      throw new ConfigError(file, `services[${i}]: tls "${s.tls}" needs both "cert" and "key" files`);
    }
    if (s.cert) s.cert = resolve(baseDir, s.cert);
    if (s.key) s.key = resolve(baseDir, s.key);
  }
  const senderIds = new Set<number>();
  for (const [i, snd] of config.senders.entries()) {
    if (senderIds.has(snd.id)) throw new ConfigError(file, `senders[${i}].id: duplicate sender id ${snd.id}`);
    senderIds.add(snd.id);
    if (snd.mode === 'smarthost' && !snd.host) throw new ConfigError(file, `senders[${i}]: mode "smarthost" needs "host"`);
    try {
      parseSenderRules(snd.rules);
    } catch (err) {
      throw new ConfigError(file, `senders[${i}].rules: ${(err as Error).message}`);
    }
    if (snd.ca) snd.ca = resolve(baseDir, snd.ca);
  }
  const names = new Set<string>();
  for (const [i, u] of config.users.entries()) {
    if (names.has(u.name)) throw new ConfigError(file, `users[${i}].name: duplicate user "${u.name}"`);
    names.add(u.name);
    if (u.password && !isPasswordHash(resolveSecret(u.password, file, `users[${i}].password`))) {
      throw new ConfigError(file, `users[${i}].password: expected an scrypt hash made by "moonpost hash-password"`);
    }
  }
  if (config.admin) validateAdmin(config.admin, file, baseDir);
  const envData = process.env.MOONPOST_DATA;
  if (envData && !(input as ConfigInput | undefined)?.dataDir) config.dataDir = envData;
  config.dataDir = isAbsolute(config.dataDir) ? config.dataDir : resolve(baseDir, config.dataDir);
  config.scripts.dir = config.scripts.dir ? resolve(baseDir, config.scripts.dir) : join(config.dataDir, 'scripts');
  return config;
}

/** The admin API: someone must be able to log in, with hashed passwords and long tokens. */
function validateAdmin(admin: NonNullable<Config['admin']>, file: string, baseDir: string): void {
  if (admin.enabled && !admin.users.length && !admin.tokens.length) {
    throw new ConfigError(file, 'admin: needs at least one entry in "users" or "tokens" (or enabled: false)');
  }
  const names = new Set<string>();
  for (const [i, u] of admin.users.entries()) {
    if (names.has(u.name)) throw new ConfigError(file, `admin.users[${i}].name: duplicate user "${u.name}"`);
    names.add(u.name);
    if (!isPasswordHash(resolveSecret(u.password, file, `admin.users[${i}].password`))) {
      throw new ConfigError(file, `admin.users[${i}].password: expected an scrypt hash made by "moonpost hash-password"`);
    }
  }
  const tokenNames = new Set<string>();
  for (const [i, t] of admin.tokens.entries()) {
    if (tokenNames.has(t.name)) throw new ConfigError(file, `admin.tokens[${i}].name: duplicate token name "${t.name}"`);
    tokenNames.add(t.name);
    if (resolveSecret(t.token, file, `admin.tokens[${i}].token`).length < 16) {
      throw new ConfigError(file, `admin.tokens[${i}].token: expected at least 16 characters (e.g. from "openssl rand -hex 32")`);
    }
  }
  if (admin.tls) {
    admin.tls.cert = resolve(baseDir, admin.tls.cert);
    admin.tls.key = resolve(baseDir, admin.tls.key);
  }
}

/** The value of a secret; an `{env: NAME}` secret must name a set variable. */
export function resolveSecret(s: Secret, file = 'config', path = 'secret'): string {
  if (typeof s === 'string') return s;
  const v = process.env[s.env];
  if (v === undefined || v === '') throw new ConfigError(file, `${path}: environment variable ${s.env} is not set`);
  return v;
}

export function loadConfig(file?: string): Config {
  if (!file) return validateConfig(embeddedDefaults(), '(embedded defaults)');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, `cannot read: ${(err as Error).message}`);
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length) throw new ConfigError(file, `YAML syntax: ${doc.errors[0].message}`);
  return validateConfig(doc.toJS() ?? {}, file, dirname(resolve(file)));
}
