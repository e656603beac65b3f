import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { LUA_OK, LuaVm } from '../../src/script/lua-vm.js';
import { LuaState } from '../../src/script/lua-state.js';
import { PatternError, patternFind, plainFind } from '../../src/script/lua-pattern.js';

// The budgeted pattern matcher (lua-pattern.ts, installed as string.find/match/gmatch/gsub by
// the sandbox) against Lua's own C functions: the same driver runs in a raw state with the
// standard library untouched and in a sandboxed state, and every result must be identical, byte
// for byte: positions (and their integer subtype), captures, gsub outputs and counts, gmatch
// sequences, and error messages with their positions.

let vm: LuaVm;
let ours: LuaState;
let nativeL = 0;

before(async () => {
  vm = await LuaVm.create();
  ours = new LuaState(vm, 64 * 1024 * 1024, '=test');
  nativeL = vm.m._luaL_newstate();
  vm.m._luaL_openlibs(nativeL);
});
after(() => {
  ours.close();
  vm.m._lua_close(nativeL);
});

/** A Lua string literal for any bytes. */
function lit(s: string | Buffer): string {
  const b = typeof s === 'string' ? Buffer.from(s, 'latin1') : s;
  let out = '"';
  for (const c of b) out += c >= 0x20 && c < 0x7f && c !== 0x22 && c !== 0x5c ? String.fromCharCode(c) : `\\${String(c).padStart(3, '0')}`;
  return `${out}"`;
}

/**
 * Runs the cases (each a Lua expression giving a result string) through the same driver in
 * both states; returns their results, native first.
 */
const DRIVER = `
local fmt, mtype, concat, pack, unpack, tostring, type, select = string.format, math.type, table.concat, table.pack, table.unpack, tostring, type, select
local function ser1(v)
  local t = type(v)
  if t == 'string' then return fmt('%q', v) end
  if t == 'number' then return mtype(v) .. ':' .. tostring(v) end
  if t == 'table' or t == 'function' then return t end
  return tostring(v)
end
local function ser(r)
  local out = {}
  for i = 1, r.n do out[i] = ser1(r[i]) end
  return r.n .. '[' .. concat(out, ',') .. ']'
end
-- Replacements for gsub: a function that keeps, drops and mangles, and a table.
FN = function(a, ...)
  if a == 'a' then return nil end
  if a == 'b' then return false end
  if a == 'c' then return 42 end
  if a == '1' then return 1.5 end
  if a == 'x' then return {} end
  if a == ')' then return true end
  return '<' .. tostring(a) .. '|' .. select('#', ...) .. '>'
end
TAB = { a = 'A', b = false, c = 7, ['('] = {}, [1] = 'one', [2] = 'two', ['%'] = 2.5 }
UP = setmetatable({}, { __index = function(t, k) return type(k) == 'string' and k:upper() or nil end })
function call(f, ...) return ser(pack(pcall(f, ...))) end
-- Every value the iterator gives, called directly (errors carry this line).
function gm(...)
  local it = string.gmatch(...)
  local out = {}
  for i = 1, 300 do
    local r = pack(it())
    if r[1] == nil then break end
    out[#out + 1] = ser(r)
  end
  return concat(out, ';')
end
function GM(...) return ser(pack(pcall(gm, ...))) end
-- Method calls from Lua code (not tail calls): errors carry the driver's line.
local METHODS = {
  find = function(s, ...) return pack(s:find(...)) end,
  match = function(s, ...) return pack(s:match(...)) end,
  gsub = function(s, ...) return pack(s:gsub(...)) end,
  gmatch = function(s, ...) return pack(s:gmatch(...)) end,
}
function M(op, s, ...)
  local args = pack(...)
  return ser(pack(pcall(function() return ser(METHODS[op](s, unpack(args, 1, args.n))) end)))
end
function MG(s, ...)
  local args = pack(...)
  return ser(pack(pcall(function()
    local out = {}
    for a, b in s:gmatch(unpack(args, 1, args.n)) do out[#out + 1] = ser1(a) .. '/' .. ser1(b) end
    return concat(out, ';')
  end)))
end
function RUN()
  local out = {}
  for i, case in ipairs(CASES) do out[i] = case() end
  return concat(out, '\\1')
end
`;

function runDriver(cases: string[]): { native: Buffer[]; ours: Buffer[] } {
  const code = `${DRIVER}\nCASES = {\n${cases.map((c) => `function() return ${c} end,`).join('\n')}\n}\n`;
  const m = vm.m;
  // Native: the raw state.
  const L = nativeL;
  const buf = Buffer.from(code, 'latin1');
  const p = m._malloc(buf.length);
  m.HEAPU8.set(buf, p);
  let status = m._luaL_loadbufferx(L, p, buf.length, vm.cstr('=driver'), vm.cstr('t'));
  m._free(p);
  assert.equal(status, LUA_OK, vm.toStr(L, -1) ?? '');
  status = m._lua_pcallk(L, 0, 0, 0, 0, 0);
  assert.equal(status, LUA_OK, vm.toStr(L, -1) ?? '');
  m._lua_getglobal(L, vm.cstr('RUN'));
  status = m._lua_pcallk(L, 0, 1, 0, 0, 0);
  assert.equal(status, LUA_OK, vm.toStr(L, -1) ?? '');
  const native = vm.toBytes(L, -1)!;
  m._lua_settop(L, 0);
  // Ours: the sandboxed state.
  const r = ours.loadAndRun(buf, '=driver', 't');
  assert.equal(r.kind, 'ok', JSON.stringify(r));
  const res = ours.call('RUN', [], { timeMs: 60_000, instructions: Infinity }, true);
  assert.equal(res.kind, 'ok', JSON.stringify(res));
  const mine = (res as { values: Buffer[] }).values[0];
  const split = (b: Buffer): Buffer[] => {
    const parts: Buffer[] = [];
    let from = 0;
    for (let i = 0; i <= b.length; i++) {
      if (i === b.length || b[i] === 1) {
        parts.push(b.subarray(from, i));
        from = i + 1;
      }
    }
    return parts;
  };
  return { native: split(native), ours: split(mine) };
}

function compare(cases: string[]): void {
  const { native, ours: mine } = runDriver(cases);
  assert.equal(native.length, cases.length);
  assert.equal(mine.length, cases.length);
  const diffs: string[] = [];
  for (let i = 0; i < cases.length; i++) {
    if (!native[i].equals(mine[i])) diffs.push(`${cases[i]}\n  native: ${native[i].toString('latin1')}\n  ours:   ${mine[i].toString('latin1')}`);
  }
  assert.equal(diffs.length, 0, `${diffs.length} of ${cases.length} differ:\n${diffs.slice(0, 20).join('\n')}`);
}

// ---- hand-written cases -------------------------------------------------------------------

const S = lit;

test('find and match: plain and pattern searches, init, anchors, classes, sets, captures', () => {
  const cases: string[] = [];
  const finds: [string, string, string?][] = [
    ['', ''],
    ['alo', ''],
    ['a\0o a\0o a\0o', 'a', '1'],
    ['a\0o a\0o a\0o', 'a\0o', '2'],
    ['a\0a\0a\0a\0\0ab', '\0ab', '2'],
    ['a\0a\0a\0a\0\0ab', 'b'],
    ['a\0a\0a\0a\0\0ab', 'b\0'],
    ['', '\0'],
    ['alo123alo', '12'],
    ['alo123alo', '^12'],
    ['aaab', '.*b'],
    ['aaa', '.-b'],
    ['alo xo', '.o$'],
    [' \n isto \xe9 assim', '%S%S*'],
    [' \n isto \xe9 assim', '%S*$'],
    [' \n isto \xe9 assim', '[a-z]*$'],
    ['um caracter ? extra', '[^%sa-z]'],
    ['', 'a?'],
    ['\xe1', '\xe1?'],
    ['\xe1bl', '\xe1?b?l?'],
    ['  \xe1bl', '\xe1?b?l?'],
    ['aa', '^aa?a?a'],
    [']]]\xe1b', '[^]]'],
    ['0alo alo', '%x*'],
    ['alo alo', '%C+'],
    ['(\xe1lo)', '%(\xe1'],
    ['alo', '(a)(l)(o)'],
    ['alo', '()a()'],
    ['hello', '()ll()'],
    ['hello', '()'],
    ['alo"bla"alo', '(["\'])(.-)%1'],
    ["alo'bla\"alo'x", '(["\'])(.-)%1'],
    ['aaa', '(a)%1'],
    ['abab', '(ab)%1$'],
    ['  (x(y)z) (w)', '%b()'],
    ['((a)', '%b()'],
    ['[[]]', '%b[]'],
    ['aXb', '%bXb'],
    ['THE (quick) fox', '%f[%a]%a+'],
    ['THE (quick) fox', '%f[%A]'],
    ['aaa', '%f[^%z]a'],
    ['aaa', 'a%f[%z]'],
    ['a\0b', '%f[%z]'],
    ['a\0b', '[%z]'],
    ['a\0b', '%Z+'],
    ['x=1, y=22', '(%w+)=(%w+)'],
    ['key: value  ', '^(%w+):%s*(.-)%s*$'],
    ['Subject: Hello', '^Subject:'],
    ['subject: Hello', '^[Ss]ubject:%s*(.*)$'],
    ['192.0.2.1', '^(%d+)%.(%d+)%.(%d+)%.(%d+)$'],
    ['a.b-c', '[%.%-]'],
    ['a]b', '[]]'],
    ['a^b', '[%^]'],
    ['a^b', '[b^]'],
    ['a-b', '[a-]'],
    ['a-b', '[-a]'],
    ['x-z', '[%a-z]+'],
    ['ABCdef123_!', '%u+'],
    ['ABCdef123_!', '%l+'],
    ['ABCdef123_!', '%p+'],
    ['ABCdef123_!', '%W+'],
    ['\t\v\f\r\n x', '%s+'],
    ['\x01\x7f\x80\xff', '%c+'],
    ['\x80\xff', '%g'],
    ['\x80\xff', '[\x80-\xff]+'],
    ['az09AZ', '%X+'],
    ['a$b', 'a$b'],
    ['a$', 'a$'],
    ['ab', '$'],
    ['ab', '^$'],
    ['', '^$'],
    ['a.b', '.', '-1'],
    ['^a', '^^a'],
    ['a+b', 'a+b'],
    ['aaab', 'a-b'],
    ['aaab', 'a*'],
    ['baaa', 'a*'],
    ['abc', 'b*', '2'],
    ['abc', '%', undefined],
    ['abc', 'x%'],
    ['abc', '[a'],
    ['abc', '[a%'],
    ['abc', '[%'],
    ['abc', '['],
    ['abc', '[^'],
    ['abc', '[]'],
    ['abc', '(()'],
    ['abc', '(a'],
    ['abc', 'a)'],
    ['abc', ')'],
    ['abc', '%1'],
    ['abc', '(a)%2'],
    ['abc', '(a%1)'],
    ['abc', '%0'],
    ['abc', '()%1'],
    ['abc', '%b'],
    ['abc', '%ba'],
    ['abc', '%f'],
    ['abc', '%fa'],
    ['abc', '%f[a'],
    ['abc', '%g%'],
  ];
  for (const [s, p, init] of finds) {
    const a = init === undefined ? `${S(s)}, ${S(p)}` : `${S(s)}, ${S(p)}, ${init}`;
    cases.push(`call(string.find, ${a})`, `call(string.match, ${a})`, `M('find', ${a})`, `M('match', ${a})`);
  }
  for (const init of ['nil', '0', '1', '2', '3', '4', '5', '100', '-1', '-2', '-3', '-4', '-100', 'math.mininteger', 'math.maxinteger', '2.0', '"2"', '" 3 "', '"0x2"', '1.5', '"x"', '{}', 'true']) {
    cases.push(`call(string.find, "abc", "b", ${init})`, `call(string.find, "abc", "", ${init})`, `call(string.match, "abc", ".", ${init})`);
    cases.push(`call(string.find, "abc", "^b", ${init})`, `call(string.find, "abc", "c", ${init}, true)`, `M('find', "abc", "()", ${init})`);
  }
  // plain: explicit, or no specials
  for (const [s, p] of [
    ['a.b', '.'],
    ['a+b', '+'],
    ['a(b', '('],
    ['a[b', '['],
    ['a%b', '%'],
    ['x^y', '^y'],
    ['aaaab', 'aab'],
    ['', ''],
    ['abc', 'abcd'],
  ]) {
    cases.push(`call(string.find, ${S(s)}, ${S(p)}, 1, true)`, `call(string.find, ${S(s)}, ${S(p)}, 1, 1)`, `call(string.find, ${S(s)}, ${S(p)}, 1, false)`);
  }
  // limits
  cases.push(
    `call(string.find, "a", string.rep("()", 32))`,
    `call(string.find, "a", string.rep("()", 33))`,
    `call(string.match, "a", string.rep("(", 32) .. "a" .. string.rep(")", 32))`,
    `call(string.match, string.rep("a", 250), string.rep("a?", 250))`,
    `call(string.match, string.rep("a", 150), string.rep("a?", 150))`,
    `call(string.match, string.rep("a", 300), string.rep("(a)", 33))`,
    `call(string.find, string.rep("a", 300), string.rep("%w", 199))`,
    `call(string.find, string.rep("a", 300), string.rep("%w", 201))`,
  );
  // numbers are strings here
  cases.push(`call(string.find, 12345, 34)`, `call(string.match, 1.5, "%.")`, `call(string.find, 2^53, "0", 1, true)`, `call(string.find, "a1.5", 1.5)`);
  // argument errors: the same names and messages, called through pcall and as methods
  cases.push(
    `call(string.find)`,
    `call(string.find, nil, "x")`,
    `call(string.find, "x")`,
    `call(string.find, "x", {})`,
    `call(string.find, "x", setmetatable({}, { __name = "MyType" }))`,
    `call(string.match, true, "x")`,
    `call(string.find, "x", "x", {})`,
    `call(string.find, "x", "x", 1.5)`,
    `call(string.find, "x", "x", "1.5")`,
    `call(string.find, "x", "x", "y")`,
    `M('find', "x", nil)`,
    `M('match', "x", "x", "y")`,
    `call(function() local f = string.find return f(nil) end)`,
    `call(function() local r = { string.match(nil) } return r end)`,
  );
  compare(cases);
});

test('gmatch: sequences, init, empty matches, anchors taken literally, errors', () => {
  const cases: string[] = [];
  const gms: [string, string, string?][] = [
    ['hello world from Lua', '%a+'],
    ['from=world, to=Lua', '(%w+)=(%w+)'],
    ['abc', ''],
    ['abc', 'b*'],
    ['abc', '.-'],
    ['abc', 'a*'],
    ['aaa', 'a-'],
    ['abc', '()'],
    ['abc', '()b()'],
    ['^a^a', '^a'],
    ['aaa', '^a'],
    ['abc', '.', '2'],
    ['abc', '.', '-1'],
    ['abc', '.', '0'],
    ['abc', '.', '4'],
    ['abc', '', '3'],
    ['abc', '', '4'],
    ['abc', '', '5'],
    ['abc', '', '-10'],
    ['abc', '', 'math.maxinteger'],
    ['a\0b\0c', '[^\0]+'],
    ['a\0b\0c', '%z'],
    ['x(y)(z(w))', '%b()'],
    ['THE (quick) fox', '%f[%a]%a+'],
    ['a,b,,c', '([^,]*)'],
    ['a b  c', '%s*'],
    ['abc', '%'],
    ['abc', '[a'],
    ['abc', '(a'],
    ['abc', 'a)'],
    ['', '%'],
    ['', ''],
    ['abc', '(()'],
    ['abc', '%1'],
  ];
  for (const [s, p, init] of gms) {
    const a = init === undefined ? `${S(s)}, ${S(p)}` : `${S(s)}, ${S(p)}, ${init}`;
    cases.push(`GM(${a})`, `MG(${a})`);
  }
  cases.push(
    `call(string.gmatch)`,
    `call(string.gmatch, "x")`,
    `call(string.gmatch, nil, "x")`,
    `call(string.gmatch, "x", "x", 1.5)`,
    `call(string.gmatch, "x", "x", "z")`,
    `GM(12345, "%d")`,
    `GM("a1b2", 2)`,
    `M('gmatch', {}, "x")`,
  );
  compare(cases);
});

test('gsub: string, number, table and function replacements, limits, anchors, empty matches, errors', () => {
  const cases: string[] = [];
  const subs: [string, string, string, string?][] = [
    ['\xfclo \xfclo', '\xfc', '"x"'],
    ['alo \xfalo  ', ' +$', '""'],
    ['  alo alo  ', '^%s*(.-)%s*$', '"%1"'],
    ['alo  alo  \n 123\n ', '%s+', '" "'],
    ['abc', '%w', '"%1%0"'],
    ['abc', '%w+', '"%0%1"'],
    ['\xe1\xe9\xed', '$', '"\\0\xf3\xfa"'],
    ['', '^', '"r"'],
    ['', '$', '"r"'],
    ['um (dois) tres (quatro)', '(%(%w+%))', 'string.upper'],
    ['abc=xyz', '(%w*)(%p)(%w+)', '"%3%2%1-%0"'],
    ['abc', '', '"-"'],
    ['abc', '', '"-"', '2'],
    ['abc', '', '"-"', '0'],
    ['abc', '', '"-"', '-1'],
    ['abc', '', '"-"', '2.0'],
    ['abc', '', '"-"', '"1"'],
    ['hello world', '(%w+)', '"%1 %1"'],
    ['hello world', '%w+', '"%0 %0"', '1'],
    ['hello world', '%w+', '"%1"'],
    ['hello world', '(%w+)', '"%2"'],
    ['hello world', '%w+', '"%2"'],
    ['hello world', '(%w+)', '"%x"'],
    ['hello world', '(%w+)', '"100%"'],
    ['hello world', '(%w+)', '"100%%"'],
    ['hello world', 'xyz', '"%x"'],
    ['hello', '', '"x"'],
    ['abc', 'b*', '"-"'],
    ['a b', '%f[%w]%w+', '"X"'],
    ["alo 'oi' alo", "%b''", '"\\""'],
    ['f(a(b)c)d', '%b()', '""'],
    ['x1y22z333', '(%d)%1*', '"<%0>"'],
    ['abc', '()', '"%1"'],
    ['abc', '()', 'FN'],
    ['abc', '()', 'TAB'],
    ['abc', '(b)()', '"[%1:%2]"'],
    ['aaa', '^a', '"b"'],
    ['aaa', '^a*', '"b"'],
    ['aaa', '^', '"b"'],
    ['aaa', '^x', '"b"'],
    ['aaa', '^a', '"b"', '0'],
    ['abcabc', '%w', 'FN'],
    ['abc1x)', '.', 'FN'],
    ['abc(d%', '.', 'TAB'],
    ['abc', '%w', 'UP'],
    ['abc def', '(%w)(%w*)', 'FN'],
    ['abc def', '%w+', '{}'],
    ['abc', '.', '5'],
    ['abc', '.', '1.5'],
    ['abc', '.', '2^63'],
    ['abc', '.', '-0.0'],
    ['abc', '(.)', '"%1%1"', '2'],
    ['abc', '(a', '"x"'],
    ['abc', '(a', '"%0"'],
    ['abc', '(a', '"%1"'],
    ['abc', '(a', 'FN'],
    ['abc', '(a', 'TAB'],
    ['abc', '(a)(b', '"%1"'],
    ['abc', '(a)(b', '"%2"'],
    ['abc', '(a)(b', 'TAB'],
    ['abc', '%', '"x"'],
    ['', '%', '"x"'],
    ['abc', '[a', '"x"'],
    ['abc', 'a)', '"x"'],
    ['abc', '%1', '"x"'],
    ['a\0b\0', '%z', '"\\0\\0"'],
    ['a\0b\0', '[^%z]', '"%0%0"'],
    ['\xff\x80', '[\x80-\xff]', '"%%"'],
  ];
  for (const [s, p, r, n] of subs) {
    const a = n === undefined ? `${S(s)}, ${S(p)}, ${r}` : `${S(s)}, ${S(p)}, ${r}, ${n}`;
    cases.push(`call(string.gsub, ${a})`, `M('gsub', ${a})`);
  }
  cases.push(
    `call(string.gsub)`,
    `call(string.gsub, "x")`,
    `call(string.gsub, "x", "x")`,
    `call(string.gsub, "x", "x", true)`,
    `call(string.gsub, "x", "x", nil, "z")`,
    `call(string.gsub, "x", "x", "y", "z")`,
    `call(string.gsub, "x", "x", "y", 1.5)`,
    `call(string.gsub, nil, "x", "y")`,
    `call(string.gsub, "x", {}, "y")`,
    `call(string.gsub, 12345, 3, 9)`,
    `call(string.gsub, 12345, "%d", { ["3"] = "three" })`,
    `M('gsub', "x", "x", true)`,
    `M('gsub', "abc", ".", function() return {} end)`,
    `M('gsub', "abc", ".", function(c) error("in repl " .. c) end)`,
    `M('gsub', "abc", ".", function(c) error({}) end)`,
    `M('gsub', "abc", "(.)", "%9")`,
    `call(string.gsub, "abc", ".", function(c) return coroutine.yield(c) end)`,
    `ser(pack(coroutine.resume(coroutine.create(function() return ("abc"):gsub(".", function(c) coroutine.yield(c) end) end))))`,
    `ser(pack(coroutine.resume(coroutine.create(function() for w in ("abc"):gmatch(".") do coroutine.yield(w) end return "done" end))))`,
    `call(string.gsub, string.rep("ab", 5000), "a", "%0%0")`,
    `call(string.gsub, string.rep("ab", 5000), "b", FN)`,
    `call(string.gsub, string.rep("a\\0", 3000), "", "-")`,
    // gsub inside a replacement function, and a pattern made of the subject
    `call(string.gsub, "a b c", "%w", function(w) return (w:gsub(".", "%0%0")) end)`,
    `call(string.gsub, "hello", "l+", function(m) return m:find("l", 2, true) end)`,
  );
  compare(cases);
});

// ---- random cases -------------------------------------------------------------------------

/** mulberry32: a small seeded PRNG, so failures reproduce. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SUBJECT_CHARS = ['a', 'a', 'b', 'b', 'c', '(', ')', '%', '.', ' ', '\0', '\xff', '1', ']', '-', 'A'];
const ITEMS = ['a', 'a', 'b', 'c', '.', '%a', '%d', '%s', '%w', '%p', '%x', '%A', '%S', '%z', '%.', '%%', '%(', '[ab]', '[^a]', '[a-c]', '[%a%d]', '[]]', '[^]]', '[%]a]', '\0', '\xff', '-', ' ', '1'];
const SPECIAL_ITEMS = ['%b()', '%bab', '%f[%w]', '%f[%W]', '%f[a]', '()', '%1', '%2', '(', ')', '(a)', '(.)', '(%a+)'];
const QUANTIFIERS = ['', '', '', '*', '+', '-', '?'];
const MALFORMED = ['%', '[a', '%b', '%bx', '%f', '%fa', '(', ')', '%9', '[%'];

function randomCases(seed: number, count: number): string[] {
  const r = rng(seed);
  const pick = <T>(a: T[]): T => a[Math.floor(r() * a.length)];
  const cases: string[] = [];
  for (let i = 0; i < count; i++) {
    let s = '';
    const sl = Math.floor(r() * 11);
    for (let j = 0; j < sl; j++) s += pick(SUBJECT_CHARS);
    let p = r() < 0.15 ? '^' : '';
    const items = 1 + Math.floor(r() * 4);
    for (let j = 0; j < items; j++) p += r() < 0.2 ? pick(SPECIAL_ITEMS) : pick(ITEMS) + pick(QUANTIFIERS);
    if (r() < 0.1) p += '$';
    if (r() < 0.05) p += pick(MALFORMED);
    const init = pick(['', '', '', ', 1', ', 2', ', -1', ', -3', ', 0', ', 5', ', 11', ', 12', ', 30']);
    const a = `${S(s)}, ${S(p)}`;
    cases.push(`call(string.find, ${a}${init})`, `call(string.match, ${a}${init})`, `GM(${a}${init})`);
    if (r() < 0.2) cases.push(`call(string.find, ${a}${init || ', 1'}, true)`);
    const repl = pick(['"<%0>"', '"%1"', '"[%2]"', '"x"', '"%%"', '""', '"%"', '"%a"', '7', 'FN', 'FN', 'TAB', 'UP']);
    const n = pick(['', '', '', ', 1', ', 2', ', 0', ', -1']);
    cases.push(`call(string.gsub, ${a}, ${repl}${n})`);
  }
  return cases;
}

test('random subjects and patterns from a small alphabet: find, match, gmatch, gsub agree with Lua', () => {
  compare(randomCases(20240501, 500));
  compare(randomCases(7, 500));
});

test('random patterns that match: subjects built from the pattern agree with Lua', () => {
  // Patterns without specials or classes that the subject then contains, so most cases match
  // and exercise captures and replacements rather than failing early.
  const r = rng(99);
  const pick = <T>(a: T[]): T => a[Math.floor(r() * a.length)];
  const cases: string[] = [];
  for (let i = 0; i < 300; i++) {
    const words = ['ab', 'ba', 'aab', 'b', 'a', 'ca', 'abc'];
    let s = '';
    for (let j = 0, n = Math.floor(r() * 5); j < n; j++) s += pick(words) + pick(['', ' ', '(', ')', '']);
    const p = pick(['(a+)(b*)', '(%w+)', '(a)(.-)(b)', '()(a*)()', '%((.-)%)', '(b)%1*', '%b()', '(%a)%1', '^(a*)', 'a-b', '(.)(.)$', '[ab]+', '%f[%a]%a', '.?.?', '(%l*)%s*']);
    const a = `${S(s)}, ${S(p)}`;
    cases.push(`call(string.find, ${a})`, `call(string.match, ${a})`, `GM(${a})`, `call(string.gsub, ${a}, ${pick(['"<%0|%1>"', '"%2%1"', 'FN', 'TAB', '"-"'])})`);
  }
  compare(cases);
});

test('random runs of single classes (searched by a scan alone) agree with Lua, in more patterns than the matcher keeps', () => {
  const r = rng(4242);
  const pick = <T>(a: T[]): T => a[Math.floor(r() * a.length)];
  const cases: string[] = [];
  for (let i = 0; i < 400; i++) {
    let s = '';
    for (let j = 0, n = Math.floor(r() * 12); j < n; j++) s += pick(['a', 'A', 'b', '1', ' ', '.', '^', '%', ']', '\\xe9']);
    let p = '';
    for (let j = 0, n = 1 + Math.floor(r() * 4); j < n; j++) p += pick(['a', '[aA]', '[^a]', '%d', '%a', '.', '%.', '[%]b]', 'b', '^', '%%', '[\\xe9]', '%W']);
    const a = `${S(s)}, ${S(p)}`;
    const init = pick(['', '', ', 2', ', -3']);
    cases.push(`call(string.find, ${a}${init})`, `call(string.match, ${a}${init})`, `GM(${a})`, `call(string.gsub, ${a}, "<%0>")`);
  }
  // Longer than the matcher compiles or searches as a run.
  for (const [subject, pattern] of [
    ['xA'.repeat(40), '[aA]'.repeat(40)],
    ['xa'.repeat(40), '[xX]a'.repeat(33)],
    [`${'a'.repeat(60)}b`, `${'a'.repeat(40)}.`],
    [`${'a'.repeat(200)}b`, `${'a'.repeat(130)}.`],
    [`${'a'.repeat(200)}b`, `${'a'.repeat(130)}%a+b`],
  ]) cases.push(`call(string.find, ${S(subject)}, ${S(pattern)})`, `call(string.gsub, ${S(subject)}, ${S(pattern)}, "-")`);
  compare(cases);
});

// ---- the JS primitive on its own ----------------------------------------------------------

test('patternFind: positions, captures as bytes or positions, anchors, lastMatch, errors', () => {
  const b = (s: string): Buffer => Buffer.from(s, 'latin1');
  assert.deepEqual(patternFind(b('key: value'), b('^(%w+):%s*()(.*)'), 0), { start: 0, end: 10, captures: [b('key'), 6, b('value')] });
  assert.equal(patternFind(b('a key: value'), b('^(%w+):'), 0), null);
  assert.deepEqual(patternFind(b('a^b'), b('^b'), 0, { anchor: false }), { start: 1, end: 3, captures: [] });
  assert.deepEqual(patternFind(b('abc'), b('b*'), 1, { lastMatch: 1 }), { start: 1, end: 2, captures: [] });
  assert.deepEqual(patternFind(b('abc'), b('x*'), 1, { lastMatch: 1 }), { start: 2, end: 2, captures: [] });
  assert.deepEqual(patternFind(b('\xff\0\xfe'), b('[\x80-\xff]%z'), 0), { start: 0, end: 2, captures: [] });
  assert.throws(() => patternFind(b('a'), b('(a'), 0), new PatternError('unfinished capture'));
  assert.throws(() => patternFind(b('a'), b('[a'), 0), /^PatternError: malformed pattern \(missing '\]'\)$/);
  assert.throws(() => patternFind(b('a'), b('%'), 0), /malformed pattern \(ends with '%'\)/);
  assert.throws(() => patternFind(b('a'), b('%f'), 0), /missing '\[' after '%f' in pattern/);
  assert.equal(plainFind(b('a.b.c'), b('.c'), 0), 3);
  assert.equal(plainFind(b('abc'), b(''), 3), 3);
  assert.equal(plainFind(b('abc'), b('abcd'), 0), -1);
});

test('patternFind: the budget check runs every few thousand steps, gets the steps, and stops the match by throwing', () => {
  const subject = Buffer.from('a'.repeat(600));
  let steps = 0;
  let calls = 0;
  const stop = new Error('budget');
  const t0 = performance.now();
  assert.throws(
    () =>
      patternFind(subject, Buffer.from('.-.-.-b'), 0, {}, (n) => {
        calls++;
        steps += n;
        if (steps > 2_000_000) throw stop;
      }),
    stop,
  );
  assert.ok(performance.now() - t0 < 2000);
  assert.ok(calls > 100 && steps / calls < 10_000, `${calls} checks for ${steps} steps`);
});

// ---- budgets in the VM ----------------------------------------------------------------------

const RUNAWAY_PATTERNS = [
  'return string.rep("a", 600):find(".-.-.-b")',
  'return string.rep("a", 600):match(".-.-.-b")',
  'return (string.rep("a", 600):gsub(".-.-.-b", "x"))',
  'for w in string.rep("a", 600):gmatch(".-.-.-b") do end',
  'local ok = pcall(string.find, string.rep("a", 600), ".-.-.-b") return "swallowed " .. tostring(ok)',
  'while true do pcall(string.match, string.rep("a", 600), ".-.-.-b") end',
  'return (string.rep("a", 600):gsub("a", function() return string.rep("a", 600):find(".-.-.-b") end))',
  'return string.rep("a", 100000):find(string.rep("a?", 150) .. "b")',
  'return string.rep("(", 300000):find("%b()")',
];

for (const code of RUNAWAY_PATTERNS) {
  test(`a backtracking pattern is stopped by the time budget: ${code}`, () => {
    const st = new LuaState(vm, 16 * 1024 * 1024, '=runaway');
    try {
      assert.equal(st.loadAndRun(Buffer.from(`function f() ${code} end`), '=runaway', 't').kind, 'ok');
      const t0 = performance.now();
      const r = st.call('f', [], { timeMs: 150, instructions: Infinity });
      const dt = performance.now() - t0;
      assert.equal(r.kind, 'stopped', JSON.stringify(r));
      assert.equal((r as { stop: string }).stop, 'timeout');
      assert.ok(dt < 1000, `stopped after ${dt} ms`);
    } finally {
      st.close();
    }
  });
}

test('matching steps count as instructions: a backtracking pattern exhausts the instruction budget', () => {
  const st = new LuaState(vm, 16 * 1024 * 1024, '=steps');
  try {
    st.loadAndRun(Buffer.from('function f() return string.rep("a", 600):find(".-.-.-b") end'), '=steps', 't');
    const t0 = performance.now();
    const r = st.call('f', [], { timeMs: 60_000, instructions: 1_000_000 });
    assert.equal(r.kind, 'stopped');
    assert.equal((r as { stop: string }).stop, 'instructions');
    assert.ok(performance.now() - t0 < 1000);
    assert.ok(st.budget.instructions > 1_000_000 && st.budget.instructions < 1_100_000, String(st.budget.instructions));
  } finally {
    st.close();
  }
  // Many small matches count too.
  const small = new LuaState(vm, 16 * 1024 * 1024, '=small');
  try {
    small.loadAndRun(Buffer.from('function g() local n = 0 for i = 1, 1000 do n = n + #string.rep("ab", 500):gsub("a", "") end return n end'), '=g', 't');
    assert.deepEqual(small.call('g', [], { timeMs: 60_000, instructions: Infinity }), { kind: 'ok', values: [500_000] });
    const used = small.budget.instructions;
    small.loadAndRun(Buffer.from('function h() local n = 0 for i = 1, 1000 do n = n + #string.rep("ab", 500) end return n end'), '=h', 't');
    small.call('h', [], { timeMs: 60_000, instructions: Infinity });
    assert.ok(used > small.budget.instructions + 1_000_000, `${used} vs ${small.budget.instructions}`);
  } finally {
    small.close();
  }
});

test('the host, the pattern functions and the allocator call the raw wasm exports, not wasmoon\'s assertion wrappers', () => {
  // Caught at LuaVm.create; if a wasmoon upgrade loads its module another way, this fails and
  // the wrapped functions (some 40 ns a call slower) serve instead.
  const api = (vm as unknown as { api: Record<string, unknown> }).api;
  assert.equal(vm.m, api);
  const wrapped = Object.getPrototypeOf(api) as Record<string, unknown>;
  for (const name of ['_lua_pushlstring', '_luaL_checklstring', '_lua_pcallk', '_lua_rawgeti', '_luaopen_base', '_malloc', '_realloc', '_free']) {
    assert.ok(Object.hasOwn(api, name), name);
    assert.equal(typeof wrapped[name], 'function', name);
    assert.notEqual(api[name], wrapped[name], name);
  }
});

test('the sandbox replaces the four functions in the string table, so method calls use them too', () => {
  const st = new LuaState(vm, 16 * 1024 * 1024, '=names');
  try {
    st.loadAndRun(
      Buffer.from(`function f()
        local s = ""
        return s.find == string.find, s.gsub == string.gsub, debug == nil, type(string.gmatch), select(2, pcall(string.find, {}))
      end`),
      '=names',
      't',
    );
    assert.deepEqual(st.call('f', [], { timeMs: 1000, instructions: Infinity }), {
      kind: 'ok',
      values: [true, true, true, 'function', "bad argument #1 to 'string.find' (string expected, got table)"],
    });
  } finally {
    st.close();
  }
});

test('memory is accounted inside wasm: the count is Lua\'s own, the cap stops a call, and the state still works after', () => {
  assert.equal(vm.nativeAllocator, true);
  const st = new LuaState(vm, 2 * 1024 * 1024, '=alloc');
  try {
    st.loadAndRun(
      Buffer.from(`function count() collectgarbage() return collectgarbage("count") * 1024 end
        function grow() t = {} for i = 1, 1e7 do t[i] = string.rep("x", 100) .. i end end
        function small() t = nil collectgarbage() return "ok" end`),
      '=alloc',
      't',
    );
    const budget = { timeMs: 10_000, instructions: Infinity };
    const r = st.call('count', [], budget);
    assert.equal(r.kind, 'ok');
    // Lua's count and the allocator's agree to the byte (the call's results are gone by now).
    assert.equal((r as { values: number[] }).values[0], st.memoryUsed);
    const g = st.call('grow', [], budget);
    assert.equal(g.kind, 'stopped');
    assert.equal((g as { stop: string }).stop, 'memory');
    assert.ok(st.memoryUsed <= 2 * 1024 * 1024, `${st.memoryUsed}`);
    // Outside a call the cap does not bind: the host's own pushes never fail.
    st.setGlobal('big', Buffer.alloc(3 * 1024 * 1024, 0x61));
    assert.ok(st.memoryUsed > 2 * 1024 * 1024, `${st.memoryUsed}`);
  } finally {
    st.close();
  }
  // A fresh state starts from zero: the accounting is per state.
  const other = new LuaState(vm, 2 * 1024 * 1024, '=alloc2');
  try {
    assert.ok(other.memoryUsed > 0 && other.memoryUsed < 200 * 1024, `${other.memoryUsed}`);
    assert.equal(other.budget.stopped, null);
  } finally {
    other.close();
  }
});

test('a subject in the heap is searched in wasm for where a pattern can start or a run of classes matches, with the same results', () => {
  const native = (vm as unknown as { matcher: { native: unknown } }).matcher.native;
  assert.ok(native, 'the VM\'s matcher has the native scan');
  // Each checked against the JS search of the same subject (patternFind, which never searches
  // natively); the random runs below go through more patterns than the matcher keeps.
  const st = new LuaState(vm, 16 * 1024 * 1024, '=scan');
  try {
    const subject = `${'x'.repeat(300)}Viagra 42 %d [z]\u00e9\u00ff end`;
    const patterns = ['[Vv][Ii]', '%d+', '%u', 'z', '[%]z]', '[^x]', '%p', '\u00e9', '[\u00ff]', 'e%a+', '[%s]', '%W'];
    for (const round of [1, 2]) {
      for (const p of patterns) {
        st.loadAndRun(Buffer.from(`function f(s, p) return s:find(p) end`), '=f', 't');
        const r = st.call('f', [Buffer.from(subject, 'latin1'), Buffer.from(p, 'latin1')], { timeMs: 5000, instructions: 1e9 });
        assert.equal(r.kind, 'ok');
        const js = patternFind(Buffer.from(subject, 'latin1'), Buffer.from(p, 'latin1'), 0);
        assert.deepEqual((r as { values: unknown[] }).values.slice(0, 2), js ? [js.start + 1, js.end] : [null], `round ${round}: ${p}`);
      }
    }
  } finally {
    st.close();
  }
});

test('find and match of a compiled run are answered in wasm (quick-find.ts), with the same results as Lua', () => {
  assert.equal(vm.quickFind, true, 'the quick path is installed over the patched build');
  // Each pattern is used twice in a row: the first call compiles it (the JS path), the second
  // is answered in wasm. Anchored patterns, a '^' kept literally by gmatch, numbers and extra
  // arguments must all go the JS way and agree too.
  const r = rng(777);
  const pick = <T>(a: T[]): T => a[Math.floor(r() * a.length)];
  const cases: string[] = [];
  for (let i = 0; i < 300; i++) {
    let s = '';
    // Up to 100 bytes: the SIMD search of a first class of a few bytes (class-scan.ts) too.
    for (let j = 0, n = Math.floor(r() * 100); j < n; j++) s += pick(['a', 'A', 'b', '1', ' ', '.', '^', '%', ']', '\\xe9', '\\0', 'x', 'x', 'x']);
    let p = '';
    for (let j = 0, n = 1 + Math.floor(r() * 5); j < n; j++) p += pick(['a', '[aA]', '[^a]', '%d', '%a', '.', '%.', '[%]b]', 'b', '%%', '[\\xe9]', '%W', '%z', '[ab1 ]', '[ab1 .]']);
    const a = `${S(s)}, ${S(p)}`;
    cases.push(`M("find", ${a}) .. M("find", ${a})`, `M("match", ${a}) .. M("match", ${a})`);
  }
  cases.push(
    // gmatch compiles '^a' as a run with a literal '^'; match must still anchor it.
    `GM("x^ab", "^a") .. M("match", "x^ab", "^a") .. M("match", "x^ab", "^a") .. M("find", "ab", "^a") .. M("find", "ab", "^a")`,
    `M("match", "xab", "[aA]b") .. call(string.match, 12345, "[2]3") .. call(string.match, 12345, "[2]3")`,
    `M("find", "xab", "[aA]b", 3) .. M("find", "xab", "[aA]b", -2) .. M("find", "xab", "[aA]b", 1, true) .. M("find", "x[aA]b", "[aA]b", 1, true)`,
    `M("match", ${S('b'.repeat(5000) + 'Ab')}, "[aA]b") .. M("match", ${S('b'.repeat(5000) + 'Ab')}, "[aA]b")`,
  );
  compare(cases);
});

test('the wasm find and match charge their scans as instructions, as the JS path does', () => {
  const st = new LuaState(vm, 16 * 1024 * 1024, '=quick');
  try {
    // A 4,000-byte subject: 501 steps a call, within the count the quick path may take.
    st.loadAndRun(
      Buffer.from(`S = string.rep("x", 4000)
        function g() local n = 0 for i = 1, 1000 do if S:match("[Yy][Zz]") then n = n + 1 end end return n end
        function h() local n = 0 for i = 1, 1000 do if S then n = n + 1 end end return n end`),
      '=quick',
      't',
    );
    assert.deepEqual(st.call('g', [], { timeMs: 60_000, instructions: Infinity }), { kind: 'ok', values: [0] });
    const withScans = st.budget.instructions;
    st.call('h', [], { timeMs: 60_000, instructions: Infinity });
    const without = st.budget.instructions;
    assert.ok(withScans > without + 400_000, `${withScans} vs ${without}`);
    // And a loop of them meets the instruction budget long before the loop's own count would.
    st.loadAndRun(Buffer.from('function f() for i = 1, 1e9 do if S:match("[Yy][Zz]") then return end end end'), '=quick', 't');
    const res = st.call('f', [], { timeMs: 60_000, instructions: 5_000_000 });
    assert.equal((res as { stop?: string }).stop, 'instructions');
    assert.ok(st.budget.instructions < 5_200_000, String(st.budget.instructions));
  } finally {
    st.close();
  }
});
