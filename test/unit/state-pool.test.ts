import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import type { LuaVm } from '../../src/script/lua-vm.js';
import { initialPolicy } from '../../src/smtp/session-policy.js';
import type { ScriptHooks } from '../../src/script/smtpsvr-hooks.js';
import { startScriptHost, sessionFacts, type StartedScriptHost } from '../helpers/script-host.js';

// SMTPSVR.LUA states kept as templates (src/script/state-pool.ts): every session must still find
// the state as the script's main chunk left it (S2), whatever the session before did with it.

const vmOf = (s: StartedScriptHost): LuaVm => (s.host as unknown as { vm: LuaVm }).vm;

function session(s: StartedScriptHost, log = s.log): ScriptHooks {
  return s.host.sessionHooks(initialPolicy(s.config), sessionFacts('127.0.0.2'), log)!;
}

/** The text of Start's reply in a new session, which then ends. */
function greet(s: StartedScriptHost): string {
  const hooks = session(s);
  const text = hooks.start()?.lines.join('\n') ?? '';
  hooks.end();
  return text;
}

test('a kept state comes back as made: globals, upvalues, library tables, coroutines and memory of a session do not reach the next', async () => {
  const s = await startScriptHost(`
    local n = 0
    local seen = {}
    Count = 0
    local co
    function Start()
      n = n + 1
      Count = Count + 1
      seen[#seen + 1] = IPAddress
      local patched = string.upper == nil and "patched" or "clean"
      string.upper = nil
      local waiting = co and coroutine.status(co) or "none"
      co = coroutine.create(function() coroutine.yield() end)
      coroutine.resume(co)
      Leak = {}
      for i = 1, 20000 do Leak[i] = ("x"):rep(100) .. i end
      return "220 " .. n .. " " .. Count .. " " .. #seen .. " " .. patched .. " " .. waiting
    end`);
  try {
    const made = vmOf(s).statesCreated;
    const replies = [greet(s), greet(s), greet(s), greet(s)];
    assert.deepEqual(replies, Array(4).fill('1 1 1 clean none'));
    assert.equal(vmOf(s).statesCreated - made, 1, 'one state made, then restored for each session');
  } finally {
    s.close();
  }
});

test('a kept state gives math.random a new seed per session', async () => {
  const s = await startScriptHost(`
    function Start() return "220 " .. math.random(1, 1e9) .. " " .. math.random(1, 1e9) end`);
  try {
    const draws = new Set([greet(s), greet(s), greet(s), greet(s)]);
    assert.equal(draws.size, 4, [...draws].join(' | '));
  } finally {
    s.close();
  }
});

test('after a session stopped by its budget or its memory cap, the next one runs from the template', async () => {
  const s = await startScriptHost(`
    local calls = 0
    function Start()
      calls = calls + 1
      if IPAddress == "127.0.0.8" then while true do end end
      if IPAddress == "127.0.0.9" then local t = {} for i = 1, 1e7 do t[i] = ("y"):rep(64) .. i end end
      return "220 call " .. calls
    end`);
  try {
    for (const ip of ['127.0.0.8', '127.0.0.9']) {
      const hooks = s.host.sessionHooks(initialPolicy(s.config), sessionFacts(ip), s.log)!;
      assert.throws(() => hooks.start(), /budget exceeded|memory/, ip);
      hooks.end();
      assert.equal(greet(s), 'call 1', `after ${ip}`);
    }
  } finally {
    s.close();
  }
});

test('a main chunk that prints or asks the time makes no template: it runs again for every session', async () => {
  for (const main of ['print("loaded")', 'Loaded = os.time()', 'local c = coroutine.wrap(function() return os.clock() end) c()', 'local r = math.random()']) {
    const s = await startScriptHost(`${main}\nfunction Start() return "" end`);
    try {
      const made = vmOf(s).statesCreated;
      for (let i = 0; i < 3; i++) greet(s);
      assert.equal(vmOf(s).statesCreated - made, 3, main);
    } finally {
      s.close();
    }
  }
});

test("a kept state's print goes to the log of the session it serves", async () => {
  const s = await startScriptHost(`function Start() print("hello from " .. IPAddress) return "" end`);
  try {
    const logs: string[][] = [[], []];
    for (const lines of logs) {
      const log = pino({ level: 'info' }, new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }));
      const hooks = session(s, log);
      hooks.start();
      hooks.end();
    }
    assert.deepEqual(
      logs.map((l) => l.filter((x) => x.includes('script print')).length),
      [1, 1],
    );
  } finally {
    s.close();
  }
});

test('a new script version takes no state kept for the one before', async () => {
  const s = await startScriptHost(`function Start() return "220 version one" end`);
  try {
    assert.equal(greet(s), 'version one');
    writeFileSync(join(s.config.scripts.dir!, 'SMTPSVR.LUA'), `function Start() return "220 version two" end`);
    await s.host.reload();
    assert.equal(greet(s), 'version two');
    assert.equal(greet(s), 'version two');
  } finally {
    s.close();
  }
});
