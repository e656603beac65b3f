import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LIST_MAX } from '../../src/script/smtpsvr-hooks.js';
import { initialPolicy } from '../../src/smtp/session-policy.js';
import { startScriptHost, sessionFacts } from '../helpers/script-host.js';

// The globals round trip runs outside any budget, so what it does with a list global must not
// grow with the size of the table a script puts there.
test(`a list global the script makes huge counts for its first ${LIST_MAX} entries; changes in place are still seen`, async () => {
  const s = await startScriptHost(`
    function Start()
      local t = {}
      for i = 1, 100000 do t[i] = "zone" .. i .. ".test" end
      RBLServers = t
      return ""
    end
    function DoNOOP() RBLServers[2] = "changed.test" return "" end
    function DoRSET() RBLServers = { "small.test" } return "" end`);
  try {
    const policy = initialPolicy(s.config);
    const hooks = s.host.sessionHooks(policy, sessionFacts('127.0.0.2'), s.log)!;
    assert.equal(hooks.start(), null);
    assert.equal(policy.rblServers.length, LIST_MAX);
    assert.deepEqual(policy.rblServers.slice(0, 3), ['zone1.test', 'zone2.test', 'zone3.test']);
    hooks.simple('NOOP');
    assert.deepEqual(policy.rblServers.slice(0, 3), ['zone1.test', 'changed.test', 'zone3.test']);
    hooks.simple('RSET');
    assert.deepEqual(policy.rblServers, ['small.test']);
    hooks.end();
  } finally {
    s.close();
  }
});
