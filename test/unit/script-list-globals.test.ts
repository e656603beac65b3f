import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { embeddedDefaults } from '../../src/config/defaults.js';
import { validateConfig } from '../../src/config/load.js';
import { ScriptHost } from '../../src/script/script-host.js';
import { LIST_MAX } from '../../src/script/smtpsvr-hooks.js';
import { rblDefaults } from '../../src/smtp/rbl-stage.js';
import type { SessionFacts, SessionPolicy } from '../../src/smtp/hooks.js';

// The globals round trip runs outside any budget, so what it does with a list global must not
// grow with the size of the table a script puts there.
test(`a list global the script makes huge counts for its first ${LIST_MAX} entries; changes in place are still seen`, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'moonpost-lists-'));
  try {
    mkdirSync(join(dir, 'scripts'));
    writeFileSync(
      join(dir, 'scripts', 'SMTPSVR.LUA'),
      `function Start()
        local t = {}
        for i = 1, 100000 do t[i] = "zone" .. i .. ".test" end
        RBLServers = t
        return ""
      end
      function DoNOOP() RBLServers[2] = "changed.test" return "" end
      function DoRSET() RBLServers = { "small.test" } return "" end`,
    );
    const input = embeddedDefaults() as unknown as Record<string, unknown>;
    input.dataDir = dir;
    input.scripts = { dir: join(dir, 'scripts') };
    const config = validateConfig(input, 'test');
    const log = pino({ level: 'silent' });
    const host = new ScriptHost(config, log);
    await host.start();
    try {
      const policy = {
        validClient: false, localClient: false, authRequired: false, allowedUsers: '', forceDisconnect: false, useBATV: false,
        maxRecipientsLocal: 100, maxRecipientsIncoming: 100, maxMessagesLocal: 100, maxLineLength: 1000, addUserAddresses: false,
        ...rblDefaults(config),
      } satisfies SessionPolicy;
      const facts = (): SessionFacts => ({ ip: '127.0.0.2', sessionId: 'S1', serviceId: 0, serviceName: 'smtp', authUser: '', tls: '', helo: '', mailFrom: '', rblResultInfo: {} });
      const hooks = host.sessionHooks(policy, facts, log)!;
      assert.equal(hooks.start(), null);
      assert.equal(policy.rblServers.length, LIST_MAX);
      assert.deepEqual(policy.rblServers.slice(0, 3), ['zone1.test', 'zone2.test', 'zone3.test']);
      hooks.simple('NOOP');
      assert.deepEqual(policy.rblServers.slice(0, 3), ['zone1.test', 'changed.test', 'zone3.test']);
      hooks.simple('RSET');
      assert.deepEqual(policy.rblServers, ['small.test']);
      hooks.end();
    } finally {
      host.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
