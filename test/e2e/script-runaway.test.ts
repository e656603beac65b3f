import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startScriptServer, luaString, type ScriptHarness } from '../helpers/script-server.js';
import { TestClient, openSession, sendMail, message } from '../helpers/smtp-client.js';

// Runaway scripts, the sandbox, script errors and script versions (S1, S2, S4).

let h: ScriptHarness;
const MEMORY_MB = 8;

before(async () => {
  h = await startScriptServer('', {
    domains: [{ name: 'localhost', catchAll: true }],
    scripts: { timeMs: 300, memoryMB: MEMORY_MB },
    limits: { errors: 50 },
  });
});
after(() => h.stop());

/**
 * A normal transaction in its own session; it runs while another session's script runs away
 * and must complete unaffected.
 */
async function bystander(tag: string): Promise<void> {
  const c = await openSession(h.port, 'bystander.test');
  const r = await sendMail(c, 'a@example.com', ['bystander@localhost'], message(tag));
  assert.equal(r.code, 250, r.raw);
  assert.equal((await c.cmd('QUIT')).code, 221);
  c.close();
}

async function delivered(tag: string): Promise<boolean> {
  return (await h.mailbox('localhost/bystander')).some((m) => m.includes(`Subject: ${tag}\r\n`));
}

/** The session of a client that says EHLO evil.test: its NOOP runs `body`. */
const evilScript = (body: string): string => `
  function DoNOOP()
    if HeloName == "evil.test" then
      ${body}
    end
    return "250 2.0.0 script ran"
  end
  function DoRSET() return "250 2.0.0 script RSET" end`;

const RUNAWAYS: [string, string][] = [
  ['an endless loop', 'while true do end'],
  ['a pcall loop that swallows the stop', 'while true do pcall(function() while true do end end) end'],
  ['an xpcall whose handler loops', 'while true do xpcall(function() error("x") end, function() while true do end end) end'],
  ['a 1 GB string.rep', 'local s = string.rep("x", 1024 * 1024 * 1024) return "250 " .. #s'],
  ['a string doubling by concatenation', 'local s = "x" while true do s = s .. s end'],
  ['a table that grows forever', 'local t = {} local i = 0 while true do i = i + 1 t[i] = { i } end'],
  ['deep recursion', 'local function f(n) return 1 + f(n + 1) end f(1)'],
  ['deep recursion under pcall', 'local function f(n) local ok = pcall(f, n + 1) return ok end while true do f(1) end'],
  ['a spinning coroutine', 'local co = coroutine.wrap(function() while true do end end) co()'],
  ['coroutines resumed forever', 'while true do coroutine.resume(coroutine.create(function() while true do coroutine.yield() end end)) end'],
  ['a coroutine whose <close> handler loops when the stop closes it', 'local f = coroutine.wrap(function() local x <close> = setmetatable({}, { __close = function() while true do end end }) while true do end end) f()'],
  ['coroutine.close of a stopped coroutine whose <close> handler loops', 'local co = coroutine.create(function() local x <close> = setmetatable({}, { __close = function() while true do end end }) while true do end end) coroutine.resume(co) coroutine.close(co)'],
  ['a <close> handler that loops', 'local x <close> = setmetatable({}, { __close = function() while true do end end }) while true do end'],
  ['an error object whose __tostring loops', 'error(setmetatable({}, { __tostring = function() while true do end end }))'],
  ['a huge string.format/gsub', 'local s = string.rep("ab", 1000000) while true do s = s:gsub("a", "aa") end'],
  // Lua's pattern matcher is one C call the count hook cannot stop; the budgeted one can.
  ['a backtracking pattern in string.find', 'string.rep("a", 600):find(".-.-.-b")'],
  ['a backtracking pattern in string.match', 'string.rep("a", 600):match("(.-)(.-)(.-)b")'],
  ['a backtracking pattern in string.gsub', 'string.rep("a", 600):gsub(".-.-.-b", "x")'],
  ['a backtracking pattern in string.gmatch', 'for w in string.rep("a", 600):gmatch(".-.-.-b") do end'],
  ['backtracking patterns under pcall', 'while true do pcall(string.find, string.rep("a", 600), ".-.-.-b") end'],
  ['a backtracking pattern in a gsub replacement function', 'string.rep("a", 10):gsub(".", function() return string.rep("a", 600):find(".-.-.-b") end)'],
];

for (const [name, body] of RUNAWAYS) {
  test(`runaway: ${name} costs one 451 4.3.0, switches the script off, and another session carries on`, async () => {
    await h.setScript(evilScript(body));
    const stops = h.hookStats('DoNOOP').stops;
    const evil = async (): Promise<void> => {
      const c = await openSession(h.port, 'evil.test');
      // Pipelined: the runaway command and the next one.
      c.write('NOOP\r\nNOOP\r\nRSET\r\n');
      assert.equal((await c.read()).raw, '451 4.3.0 Local error in processing (script stopped)\r\n');
      assert.equal((await c.read()).raw, '250 2.0.0 Ok\r\n', 'the script is off: default NOOP');
      assert.equal((await c.read()).raw, '250 2.0.0 Ok\r\n', 'the script is off: default RSET');
      assert.equal((await sendMail(c, 'a@example.com', ['evil@localhost'], message('evil'))).code, 250);
      c.close();
    };
    const tag = `bystander ${name}`;
    await Promise.all([evil(), bystander(tag)]);
    assert.equal(h.hookStats('DoNOOP').stops, stops + 1);
    assert.ok(await delivered(tag));
    // The server is healthy: a new session still gets the script.
    const c = await openSession(h.port);
    assert.equal((await c.cmd('NOOP')).raw, '250 2.0.0 script ran\r\n');
    c.close();
  });
}

// Lua's pattern matcher runs inside one C call, where the count hook never fires: this took
// about 3 s at 300 octets and a minute at 600, whatever the budget, and blocked every session.
// The budgeted matcher (lua-pattern.ts) stops within the budget.
for (const call of ['find(".-.-.-b")', 'gsub(".-.-.-b", "x")', 'gmatch(".-.-.-b")()']) {
  test(`runaway: a backtracking pattern (string.${call.slice(0, call.indexOf('('))}) is stopped within the budget while another session is served`, async () => {
    await h.setScript(evilScript(`string.rep("a", 600):${call}`));
    const stops = h.hookStats('DoNOOP').stops;
    const c = await openSession(h.port, 'evil.test');
    const t0 = performance.now();
    let stoppedAfter = 0;
    const evil = c.cmd('NOOP').then((r) => {
      stoppedAfter = performance.now() - t0;
      return r;
    });
    const tag = `bystander pattern ${call}`;
    const [r] = await Promise.all([evil, bystander(tag)]);
    assert.equal(r.raw, '451 4.3.0 Local error in processing (script stopped)\r\n');
    // The budget is 300 ms; leave room for a slow machine, far below the minute it took.
    assert.ok(stoppedAfter < 2000, `stopped after ${stoppedAfter.toFixed(0)} ms`);
    assert.equal(h.hookStats('DoNOOP').stops, stops + 1);
    assert.ok(await delivered(tag));
    c.close();
  });
}

test('runaway at Start: 421 and close; other sessions are unaffected', async () => {
  await h.setScript(`
    function Start() if IPAddress == "127.0.0.2" then while true do end end return "" end
    function End() end`);
  const evil = async (): Promise<void> => {
    const c = await TestClient.connect(h.port, { localAddress: '127.0.0.2' });
    assert.match((await c.read()).raw, /^421 4\.3\.0 /);
    await c.waitClosed();
  };
  await Promise.all([evil(), bystander('bystander at start')]);
  assert.ok(await delivered('bystander at start'));
});

test('runaway in a message line: the message gets 451 4.3.0 at the end and is not stored; the session goes on without the script', async () => {
  await h.setScript(`
    function MessageLine(line) if line == "loop" then while true do end end end
    function DoNOOP() return "250 2.0.0 script ran" end`);
  const c = await openSession(h.port);
  const r = await sendMail(c, 'a@example.com', ['looped@localhost'], message('looped', 'before\r\nloop\r\nafter\r\n'));
  assert.equal(r.raw, '451 4.3.0 Local error in processing (script stopped)\r\n');
  assert.equal((await c.cmd('NOOP')).raw, '250 2.0.0 Ok\r\n');
  assert.equal((await sendMail(c, 'a@example.com', ['looped@localhost'], message('second', 'loop\r\n'))).code, 250);
  c.close();
  const box = await h.mailbox('localhost/looped');
  assert.equal(box.length, 1);
  assert.match(box[0], /Subject: second/);
});

test('runaway in DoDATAStart: DATA gets 451; at BDAT the chunk is still read as data, never as commands', async () => {
  await h.setScript(`
    function DoDATAStart(list) while true do end end`);
  const c = await openSession(h.port);
  await c.cmd('MAIL FROM:<a@example.com>');
  await c.cmd('RCPT TO:<chunk@localhost>');
  assert.equal((await c.cmd('DATA')).raw, '451 4.3.0 Local error in processing (script stopped)\r\n');
  c.close();
  const d = await openSession(h.port);
  await d.cmd('MAIL FROM:<a@example.com>');
  await d.cmd('RCPT TO:<chunk@localhost>');
  const chunk = 'RSET\r\nMAIL FROM:<evil@x>\r\n';
  d.write(`BDAT ${chunk.length} LAST\r\n${chunk}VRFY someone\r\n`);
  assert.equal((await d.read()).raw, '451 4.3.0 Local error in processing (script stopped)\r\n');
  assert.match((await d.read()).lines[0], /^252 /, 'the next reply is the VRFY after the chunk');
  assert.equal((await d.cmd('RSET')).code, 250);
  assert.equal((await sendMail(d, 'a@example.com', ['chunk@localhost'], message('after the stop'))).code, 250);
  d.close();
  const box = await h.mailbox('localhost/chunk');
  assert.equal(box.length, 1);
  assert.match(box[0], /Subject: after the stop/);
});

test('runaway in End or in the main chunk: nothing to answer, and the server carries on', async () => {
  await h.setScript('function End() while true do end end');
  const ends = h.hookStats('End');
  const c = await openSession(h.port);
  await c.cmd('QUIT');
  await c.waitClosed();
  await h.waitHookCalls('End', ends.calls + 1);
  assert.equal(h.hookStats('End').stops, ends.stops + 1);
  await h.setScript(`
    if true then while true do end end
    function DoNOOP() return "250 never" end`);
  const d = await openSession(h.port);
  assert.equal((await d.cmd('NOOP')).raw, '250 2.0.0 Ok\r\n', 'a main chunk that fails leaves the session without the script');
  d.close();
  await bystander('bystander after End');
});

// ---- stalls and crashes from outside the budgeted calls ----------------------------------

test('a __gc finalizer cannot run outside a budgeted call (it would loop at the close of the state)', async () => {
  await h.setScript(`
    function DoNOOP()
      local ok, err = pcall(setmetatable, {}, { __gc = function() while true do end end })
      return "250 " .. tostring(ok) .. " " .. tostring(err)
    end`);
  const c = await openSession(h.port);
  assert.match((await c.cmd('NOOP')).lines[0], /^250 false .*__gc/);
  c.close();
  await bystander('bystander after gc');
});

test('a metatable on _G cannot trap the server setting and reading globals', async () => {
  await h.setScript(`
    function DoNOOP()
      MailFrom = nil
      UseBATV = nil
      setmetatable(_G, {
        __newindex = function(t, k, v) if k == "MailFrom" then while true do end end error("trap " .. k) end,
        __index = function(t, k) error("read trap " .. k) end,
      })
      return "250 2.0.0 trapped " .. tostring(rawget(_G, "MailFrom"))
    end`);
  const c = await openSession(h.port);
  assert.equal((await c.cmd('NOOP')).raw, '250 2.0.0 trapped nil\r\n');
  assert.equal((await c.cmd('NOOP')).raw, '250 2.0.0 trapped nil\r\n');
  assert.equal((await c.cmd('MAIL FROM:<a@example.com>')).code, 250);
  c.close();
  await bystander('bystander after _G trap');
});

test('a script that fills its memory to the brim cannot make the host abort the VM when it pushes arguments', async () => {
  await h.setScript(`
    function DoNOOP()
      local limit = ${MEMORY_MB} * 1024 * 1024
      hog = nil
      -- Big blocks first, then small tables to the last few bytes: quick on a busy machine.
      local big = string.rep("x", 1024):rep(256)
      for round = 1, 50 do
        while limit - collectgarbage("count") * 1024 > 600000 do hog = { hog, big .. round } end
        while limit - collectgarbage("count") * 1024 > 200 do hog = { hog } end
        collectgarbage()
        if limit - collectgarbage("count") * 1024 <= 200 then break end
      end
      return "250 2.0.0 full"
    end
    function DoMAILFROM(data, from, params) return params, "250 2.1.0 got " .. from end`);
  const c = await openSession(h.port);
  assert.equal((await c.cmd('NOOP')).raw, '250 2.0.0 full\r\n');
  // Arguments and globals of a few hundred bytes to push into a state with 200 bytes left.
  const r = await c.cmd(`MAIL FROM:<${'x'.repeat(60)}@${'y'.repeat(60)}.${'z'.repeat(60)}.example.com> BODY=8BITMIME SIZE=1000`);
  // The call may run or run out of memory; either way the session answers and goes on.
  assert.ok(r.code === 250 || r.raw === '451 4.3.0 Local error in processing (script stopped)\r\n', r.raw);
  assert.equal((await c.cmd('RSET')).code, 250);
  c.close();
  await bystander('bystander after full memory');
});

// ---- the sandbox --------------------------------------------------------------------------

test('sandbox: io, os.execute, os.getenv, debug, package, dofile, loadfile, string.dump and the registry are out of reach', async () => {
  await h.setScript(`
    function DoNOOP()
      local r = {}
      local function probe(name, f, ...)
        local ok, v = pcall(f, ...)
        r[#r + 1] = name .. "=" .. (ok and type(v) or "error")
      end
      probe("io", function() return io end)
      probe("io.open", function() return io.open("/etc/passwd") end)
      probe("os.execute", function() return os.execute end)
      probe("os.getenv", function() return os.getenv end)
      probe("os.exit", function() return os.exit end)
      probe("os.remove", function() return os.remove end)
      probe("os.tmpname", function() return os.tmpname end)
      probe("debug", function() return debug end)
      probe("debug.getregistry", function() return debug.getregistry() end)
      probe("package", function() return package end)
      probe("dofile", function() return dofile end)
      probe("loadfile", function() return loadfile end)
      probe("string.dump", function() return string.dump end)
      probe("string.dump via metatable", function() return ("").dump end)
      probe("collectgarbage", function() return collectgarbage end)
      probe("source host function", function() return __moonpost_source end)
      probe("os.date", function() return os.date end)
      probe("os.time", function() return os.time end)
      probe("os.clock", function() return os.clock end)
      probe("os.difftime", function() return os.difftime end)
      probe("utf8", function() return utf8.char end)
      return "250 " .. table.concat(r, "\\r\\n")
    end`);
  const c = await openSession(h.port);
  const r = await c.cmd('NOOP');
  assert.deepEqual(
    r.lines.map((l) => l.slice(4)),
    [
      'io=nil',
      'io.open=error',
      'os.execute=nil',
      'os.getenv=nil',
      'os.exit=nil',
      'os.remove=nil',
      'os.tmpname=nil',
      'debug=nil',
      'debug.getregistry=error',
      'package=nil',
      'dofile=nil',
      'loadfile=nil',
      'string.dump=nil',
      'string.dump via metatable=nil',
      'collectgarbage=function',
      'source host function=nil',
      'os.date=function',
      'os.time=function',
      'os.clock=function',
      'os.difftime=function',
      'utf8=function',
    ],
  );
  c.close();
});

test('sandbox: binary chunks are refused by load, loadstring and a reader function, even real bytecode', async () => {
  // Real bytecode of a chunk that would define DoNOOP, made by the server's own compiler.
  await h.setScript('function DoNOOP() return "250 2.0.0 from bytecode" end');
  const bytecode = h.server.scripts.smtpsvr!.current!.bytecode;
  assert.equal(bytecode[0], 27);
  await h.setScript(`
    local code = ${luaString(bytecode.toString('latin1'))}
    function DoNOOP()
      local r = {}
      local f, err = load(code)
      r[#r + 1] = "load=" .. tostring(f) .. ":" .. tostring(err)
      f, err = load(code, "x", "b")
      r[#r + 1] = "load b=" .. tostring(f) .. ":" .. tostring(err)
      f, err = load(code, "x", "bt", {})
      r[#r + 1] = "load env=" .. tostring(f) .. ":" .. tostring(err)
      local done = false
      f, err = load(function() if done then return nil end done = true return code end)
      r[#r + 1] = "reader=" .. tostring(f) .. ":" .. tostring(err)
      f, err = loadstring(code)
      r[#r + 1] = "loadstring=" .. tostring(f) .. ":" .. tostring(err)
      f, err = load("\\27Lua garbage")
      r[#r + 1] = "header=" .. tostring(f) .. ":" .. tostring(err)
      return "250 " .. table.concat(r, "\\r\\n")
    end`);
  const c = await openSession(h.port);
  const r = await c.cmd('NOOP');
  assert.equal(r.lines.length, 6, r.raw);
  for (const l of r.lines) assert.match(l, /=nil:.*attempt to load a binary chunk/, l);
  c.close();
});

test('sandbox: the Lua 5.1/5.2 names unpack, loadstring and math.pow work; load of text works', async () => {
  await h.setScript(`
    function DoNOOP()
      local a, b, c = unpack({ 1, 2, 3 })
      local sum = loadstring("return 1 + 1")()
      local env = load("return x", "chunk", "t", { x = "from env" })()
      return "250 " .. a .. b .. c .. " " .. sum .. " " .. tostring(math.pow(2, 10) == 1024) .. " " .. env
    end`);
  const c = await openSession(h.port);
  assert.equal((await c.cmd('NOOP')).raw, '250 123 2 true from env\r\n');
  c.close();
});

test('sandbox: require loads name.lua from the scripts folder, sandboxed, once; paths are refused', async () => {
  await h.writeScriptFile(
    'shared.lua',
    `local M = { loads = 0 }
     loads_seen = (loads_seen or 0) + 1
     M.io = type(io)
     M.greet = function(x) return "hello " .. x end
     return M`,
  );
  // A file outside the scripts folder that a path could reach.
  await writeFile(join(h.dataDir, 'outside.lua'), 'return "escaped"');
  await h.setScript(`
    function DoNOOP()
      local m = require("shared")
      local again = require("shared")
      local r = { m.greet("world"), "io=" .. m.io, "same=" .. tostring(m == again), "loads=" .. loads_seen }
      for _, name in ipairs({ "../outside", "..", "/etc/passwd", "sub/x", "missing" }) do
        local ok, err = pcall(require, name)
        r[#r + 1] = name .. "=" .. tostring(ok)
      end
      return "250 " .. table.concat(r, "|")
    end`);
  const c = await openSession(h.port);
  assert.equal((await c.cmd('NOOP')).raw, '250 hello world|io=nil|same=true|loads=1|../outside=false|..=false|/etc/passwd=false|sub/x=false|missing=false\r\n');
  c.close();
});

// ---- errors ------------------------------------------------------------------------------

test('a runtime error is counted and the default applies; the script stays on, and the failed callback writes nothing', async () => {
  await h.setScript(`
    function Start() local x = nil return x.field end
    function DoNOOP() ForceDisconnect = true UseBATV = true error("boom") end
    function DoRSET() return "250 2.0.0 RSET by script, UseBATV=" .. tostring(UseBATV) end`);
  const { errors, stops } = h.hookStats('DoNOOP');
  const c = await TestClient.connect(h.port);
  assert.equal((await c.read()).raw, '220 mx.test ESMTP moonpost\r\n');
  await c.cmd('EHLO client.test');
  assert.equal((await c.cmd('NOOP')).raw, '250 2.0.0 Ok\r\n');
  assert.equal(h.hookStats('DoNOOP').errors, errors + 1);
  assert.equal(h.hookStats('DoNOOP').stops, stops);
  assert.equal((await c.cmd('RSET')).raw, '250 2.0.0 RSET by script, UseBATV=false\r\n');
  assert.equal((await c.cmd('NOOP')).code, 250, 'still connected: the ForceDisconnect of the failed callback did not count');
  c.close();
});

// ---- versions (S2) -----------------------------------------------------------------------

test('a new version applies to the next connection; an open connection keeps its version; a syntax error keeps the last good one', async () => {
  await h.setScript('function DoNOOP() return "250 2.0.0 version one" end');
  const first = await openSession(h.port);
  assert.equal((await first.cmd('NOOP')).raw, '250 2.0.0 version one\r\n');
  await h.setScript('function DoNOOP() return "250 2.0.0 version two" end');
  const second = await openSession(h.port);
  assert.equal((await second.cmd('NOOP')).raw, '250 2.0.0 version two\r\n');
  assert.equal((await first.cmd('NOOP')).raw, '250 2.0.0 version one\r\n', 'the open connection keeps its version');
  const version = h.server.scripts.smtpsvr!.version;
  await h.setScript('function DoNOOP() return "250 broken" en');
  assert.equal(h.server.scripts.smtpsvr!.version, version);
  const third = await openSession(h.port);
  assert.equal((await third.cmd('NOOP')).raw, '250 2.0.0 version two\r\n', 'the last good version still runs');
  for (const c of [first, second, third]) c.close();
});

test('the folder watcher picks up a saved script without a reload call', async () => {
  await h.setScript('function DoNOOP() return "250 2.0.0 before" end');
  await writeFile(join(h.dataDir, 'scripts', 'SMTPSVR.LUA'), 'function DoNOOP() return "250 2.0.0 after" end');
  const deadline = Date.now() + 3000;
  let last = '';
  while (Date.now() < deadline) {
    const c = await openSession(h.port);
    last = (await c.cmd('NOOP')).raw;
    c.close();
    if (last.includes('after')) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(last, '250 2.0.0 after\r\n');
});

test('the script file name is matched case-insensitively', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moonpost-case-'));
  const other = await startScriptServer('', { scripts: { dir } });
  try {
    await writeFile(join(dir, 'smtpsvr.lua'), 'function DoNOOP() return "250 2.0.0 lower case" end');
    await other.server.scripts.reload();
    const c = await openSession(other.port);
    assert.equal((await c.cmd('NOOP')).raw, '250 2.0.0 lower case\r\n');
    c.close();
  } finally {
    await other.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
