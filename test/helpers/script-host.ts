import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import { embeddedDefaults } from '../../src/config/defaults.js';
import { validateConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { ScriptHost } from '../../src/script/script-host.js';
import type { SessionFacts } from '../../src/smtp/hooks.js';

export interface StartedScriptHost {
  host: ScriptHost;
  config: Config;
  log: Logger;
  /** Stops the host and removes its folder. */
  close(): void;
}

/** A script host, outside any server, with `source` as SMTPSVR.LUA in a fresh temp folder. */
export async function startScriptHost(source: string, scripts: Record<string, unknown> = {}): Promise<StartedScriptHost> {
  const dir = mkdtempSync(join(tmpdir(), 'moonpost-script-host-'));
  mkdirSync(join(dir, 'scripts'));
  writeFileSync(join(dir, 'scripts', 'SMTPSVR.LUA'), source);
  const input = embeddedDefaults() as unknown as Record<string, unknown>;
  input.dataDir = dir;
  input.scripts = { dir: join(dir, 'scripts'), ...scripts };
  const config = validateConfig(input, 'script host');
  const log = pino({ level: 'silent' });
  const host = new ScriptHost(config, log);
  await host.start();
  return {
    host,
    config,
    log,
    close() {
      host.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The facts of a plain session from `ip`, for hooks run outside a server. */
export const sessionFacts = (ip: string, helo = '', mailFrom = ''): (() => SessionFacts) => {
  const rblResultInfo = {};
  return () => ({ ip, sessionId: 'S1', serviceId: 0, serviceName: 'smtp', authUser: '', tls: '', helo, mailFrom, rblResultInfo });
};
