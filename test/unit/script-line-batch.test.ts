import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initialPolicy } from '../../src/smtp/session-policy.js';
import { startScriptHost, sessionFacts } from '../helpers/script-host.js';

// One socket read can hold tens of thousands of short lines; they reach Lua in one call, as
// a table the VM makes from the staged block.
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
    const block = Buffer.from(Array.from({ length: 40_000 }, (_, i) => `line ${i + 1}\r\n`).join(''));
    const outs = h.messageLines([block], 40_000, []);
    assert.ok(outs);
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

test('the lines of a block reach the callbacks byte for byte: empty lines, a CR inside, NUL and 8-bit bytes', async () => {
  const s = await startScriptHost(`
    local seen = {}
    function MessageLine(l) seen[#seen + 1] = l end
    function EndMessage()
      local parts = {}
      for i, l in ipairs(seen) do parts[i] = (l:gsub('.', function(c) return string.format('%02x', c:byte()) end)) end
      return '250 2.0.0 ' .. #seen .. ':' .. table.concat(parts, ',')
    end
  `);
  try {
    const h = s.host.hooksForScript(s.host.smtpsvr!.current!, initialPolicy(s.config), sessionFacts('127.0.0.1'), s.log)!;
    h.startMessage();
    const block = Buffer.concat([Buffer.from('a\r\n\r\nb\rc\r\n'), Buffer.from([0, 0xff, 0x0d, 0x0d, 0x0a]), Buffer.from('.x\r\n')]);
    assert.equal(h.messageLines([block.subarray(0, 7), block.subarray(7)], 5, [4]), null);
    // a, "", "b\rc", NUL 0xff CR (one CR taken off), ".x"
    assert.deepEqual(h.endMessage()?.lines, ['5:61,,620d63,00ff0d,2e78']);
    h.end();
  } finally {
    s.close();
  }
});

test('a block whose lines do not fit in the state\'s memory stops the script for the session, as a memory stop', async () => {
  const s = await startScriptHost('function MessageLine(l) end', { memoryMB: 1 });
  try {
    const h = s.host.hooksForScript(s.host.smtpsvr!.current!, initialPolicy(s.config), sessionFacts('127.0.0.1'), s.log)!;
    const block = Buffer.from(`${'x'.repeat(200)}\r\n`.repeat(20_000));
    assert.throws(() => h.messageLines([block], 20_000, []), /memory|not enough/i);
    // Switched off: the next block is not offered to the script.
    assert.equal(h.messageLines([Buffer.from('small\r\n')], 1, []), null);
    h.end();
  } finally {
    s.close();
  }
});

for (const [defined, want] of [
  ['both', 'r1 m1 r2 m2 r3 m3 r4 m4 r5 m5 r6 m6'],
  ['raw', 'r1 r2 r3 r4 r5 r6'],
  ['ml', 'm1 m2 m3 m4 m5 m6'],
] as const) {
  test(`an error in a line callback (${defined}) stops only that call: the others run, in order, and each error is counted`, async () => {
    const raw = defined !== 'ml';
    const ml = defined !== 'raw';
    const s = await startScriptHost(`
      local calls = {}
      ${raw ? "function MessageLineRaw(l) calls[#calls + 1] = 'r' .. l if l == '2' then error('raw fails') end if l == '5' then error() end end" : ''}
      ${ml ? "function MessageLine(l) calls[#calls + 1] = 'm' .. l if l == '3' then error('line fails') end if l == '5' then error(nil) end if l == '6' then return 'six' end end" : ''}
      function EndMessage() return '250 2.0.0 ' .. table.concat(calls, ' ') end
    `);
    try {
      const h = s.host.hooksForScript(s.host.smtpsvr!.current!, initialPolicy(s.config), sessionFacts('127.0.0.1'), s.log)!;
      h.startMessage();
      const outs = h.messageLines([Buffer.from('1\r\n2\r\n3\r\n4\r\n5\r\n6\r\n')], 6, []);
      if (ml) assert.equal(outs?.[5]?.toString(), 'six');
      else assert.equal(outs, null);
      assert.deepEqual(h.endMessage()?.lines, [want]);
      const errors = (hook: string): number => s.host.metrics.hooks.get(hook)?.errors ?? 0;
      assert.equal(errors('MessageLineRaw'), raw ? 2 : 0);
      assert.equal(errors('MessageLine'), ml ? 2 : 0);
      h.end();
    } finally {
      s.close();
    }
  });
}
