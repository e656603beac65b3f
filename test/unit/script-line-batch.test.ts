import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initialPolicy } from '../../src/smtp/session-policy.js';
import { startScriptHost, sessionFacts } from '../helpers/script-host.js';

// One socket read can hold tens of thousands of short lines; they reach Lua as the arguments
// of one call, so the stack must grow to hold them.
test('a batch of 40,000 lines reaches MessageLineRaw and MessageLine in one call, in order', async () => {
  const s = await startScriptHost(`
    local n, raws, last = 0, 0, ''
    function MessageLineRaw(l) raws = raws + 1 end
    function MessageLine(l)
      n = n + 1
      if l ~= 'line ' .. n then error('line ' .. n .. ' was ' .. l) end
      if n == 20000 then return 'replaced' end
      if n == 30000 then return false end
    end
    function EndMessage() return '250 2.0.0 ' .. n .. ' ' .. raws end
  `);
  try {
    const h = s.host.hooksForScript(s.host.smtpsvr!.current!, initialPolicy(s.config), sessionFacts('127.0.0.1'), s.log)!;
    h.startMessage();
    const lines = Array.from({ length: 40_000 }, (_, i) => Buffer.from(`line ${i + 1}`));
    const outs = h.messageLines(lines, lines);
    assert.equal(outs.length, 40_000);
    assert.equal(outs[19_999]?.toString(), 'replaced');
    assert.equal(outs[29_999], false);
    assert.equal(outs.filter((o) => o !== null).length, 2);
    const end = h.endMessage();
    assert.equal(end?.code, 250);
    assert.deepEqual(end?.lines, ['40000 40000']);
    h.end();
  } finally {
    s.close();
  }
});
