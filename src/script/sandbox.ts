/**
 * Run in every fresh state before the script (S1): keeps base, string, table, math, utf8,
 * coroutine and four os functions; removes io, debug, package, dofile, loadfile, string.dump,
 * binary chunks and __gc metamethods; replaces xpcall, coroutine.wrap and coroutine.close with
 * versions that a budget stop cannot get past; adds the Lua 5.1/5.2 names old VPOP3 scripts
 * use; replaces string.find, string.match, string.gmatch and string.gsub with budgeted pattern
 * matching (lua-pattern.ts, LuaVm). The traceback handler for protected calls is left in the
 * registry, where no script can reach it.
 */
export const SANDBOX_PRELUDE = `
local traceback = debug.traceback
-- The primitives the host's own per-session helpers use (smtpsvr-hooks.ts), taken before any
-- script can replace them: those helpers run outside the budget.
debug.getregistry()['moonpost.prims'] = {
  rawget = rawget, rawset = rawset, rawequal = rawequal, type = type, select = select,
  pcall = pcall, tostring = tostring, unpack = table.unpack, next = next,
  getmetatable = debug.getmetatable, setmetatable = setmetatable, lower = string.lower,
  getlines = debug.getregistry()['moonpost.lines'],
}
debug.getregistry()['moonpost.lines'] = nil
debug.getregistry()['moonpost.traceback'] = function(msg)
  if type(msg) ~= 'string' then msg = tostring(msg) end
  return traceback(msg, 2)
end
-- Pattern matching runs in JS under the budget (lua-pattern.ts): in C a backtracking pattern
-- is one call that the count hook cannot stop. find and match are C functions of the VM;
-- gmatch and gsub check their arguments there and call the Lua halves below, which call back
-- for each match, as lstrlib.c's gmatch_aux and str_gsub loop over match().
do
  local reg = debug.getregistry()
  local pm = reg['moonpost.patterns']
  reg['moonpost.patterns'] = nil
  local gmatch_step, gsub_step = pm.gmatch_step, pm.gsub_step
  local sub, byte, plain_find, concat = string.sub, string.byte, string.find, table.concat
  local type, select, error = type, select, error
  -- The iterator of gmatch(s, p, init): src is the offset to search from; an empty match at the
  -- end of the previous one (last) does not count.
  reg['moonpost.gmatch'] = function(s, p, src)
    local last = -1
    local function found(e, ...)
      if e then src, last = e, e end
      return ...
    end
    return function() return found(gmatch_step(s, p, src, last)) end
  end
  -- add_s, once: the replacement string as literal pieces and capture numbers (0 for the whole
  -- match), given the first match; or nil and the error add_s raises at every match.
  local function compile(news, level, ...)
    local parts, np, i = {}, 0, 1
    local unfinished = level < 0
    if unfinished then level = -level end
    while true do
      local j = plain_find(news, '%', i, true)
      if not j then break end
      if j > i then np = np + 1 parts[np] = sub(news, i, j - 1) end
      local c = byte(news, j + 1)
      if c == 37 then np = np + 1 parts[np] = '%'
      elseif c == 48 then np = np + 1 parts[np] = 0
      elseif c and c > 48 and c <= 57 then
        local idx = c - 48
        if idx > level then
          -- %1 of a pattern without captures is the whole match
          if idx ~= 1 then return nil, 'invalid capture index %' .. idx end
          np = np + 1 parts[np] = 0
        elseif unfinished and select(idx, ...) == false then return nil, 'unfinished capture'
        else np = np + 1 parts[np] = idx end
      else return nil, "invalid use of '%' in replacement string" end
      i = j + 2
    end
    if i <= #news then np = np + 1 parts[np] = sub(news, i) end
    return parts, np
  end
  -- One match of gsub (add_value): appends the text since the previous match and the
  -- replacement to out, which it makes at the first match, and compiles a replacement string
  -- then. The match is st, e (offsets), level (the number of captures, negated when one is
  -- unfinished) and the captures or the whole match, when asked for. Returns the new count of
  -- pieces, e and the state; nothing when there was no match. Errors name the caller of gsub:
  -- level 4 (this, the gsub below, gsub itself, its caller). No closures, no allocation here
  -- but the pieces: this runs for every match.
  local function gsub_match(out, k, s, src, repl, tr, parts, np, values, st, e, level, ...)
    if not st then return end
    out = out or {}
    if st > src then k = k + 1 out[k] = sub(s, src + 1, st) end
    if tr == 'string' then
      if not parts then
        parts, np = compile(repl, level, ...)
        if not parts then error(np, 4) end
        -- only a replacement with captures in it needs them from now on
        values = false
        for j = 1, np do if type(parts[j]) == 'number' then values = true end end
      end
      for j = 1, np do
        local x = parts[j]
        k = k + 1
        if x == 0 then out[k] = level == 0 and (...) or sub(s, st + 1, e)
        elseif type(x) == 'number' then out[k] = (select(x, ...))
        else out[k] = x end
      end
    else
      local v
      if tr == 'table' then
        local key = (...)
        if key == false then error('unfinished capture', 4) end
        v = repl[key]
      else
        if level < 0 then error('unfinished capture', 4) end
        v = repl(...)
      end
      if not v then v = level == 0 and (...) or sub(s, st + 1, e)
      elseif type(v) ~= 'string' and type(v) ~= 'number' then
        error('invalid replacement value (a ' .. type(v) .. ')', 4)
      end
      k = k + 1 out[k] = v
    end
    return k, e, out, parts, np, values
  end
  -- str_gsub after its argument checks: repl is a string (a number made one), a table or a
  -- function.
  reg['moonpost.gsub'] = function(s, p, repl, max_s)
    local tr = type(repl)
    local anchor = byte(p, 1) == 94
    local out, k, chunks, nc = nil, 0, nil, 0
    local src, last, n = 0, -1, 0
    local parts, np, values = nil, 0, true
    while n < max_s do
      local kk, e, o, pa, npa, va = gsub_match(out, k, s, src, repl, tr, parts, np, values, gsub_step(s, p, src, last, values))
      if not kk then break end
      k, n, src, last, out, parts, np, values = kk, n + 1, e, e, o, pa, npa, va
      -- Pieces are joined now and then, so the table stays small on a long subject.
      if k > 4000 then
        nc = nc + 1
        chunks = chunks or {}
        chunks[nc] = concat(out, '', 1, k)
        k = 0
      end
      if anchor then break end
    end
    if n == 0 then return s, 0 end
    if src < #s then k = k + 1 out[k] = sub(s, src + 1) end
    if nc == 0 then return concat(out, '', 1, k), n end
    nc = nc + 1 chunks[nc] = concat(out, '', 1, k)
    return concat(chunks, '', 1, nc), n
  end
  string.find, string.match, string.gmatch, string.gsub = pm.find, pm.match, pm.gmatch, pm.gsub
end
local os_keep = { date = os.date, time = os.time, clock = os.clock, difftime = os.difftime }
local raw_load = load
local select = select
load = function(chunk, name, mode, ...)
  if select('#', ...) > 0 then return raw_load(chunk, name, 't', (...)) end
  return raw_load(chunk, name, 't')
end
loadstring = function(s, name) return raw_load(s, name, 't') end
unpack = table.unpack
math.pow = function(x, y) return x ^ y end
string.dump = nil
-- Lua calls a message handler with hooks off when the error comes from the count hook (a
-- budget stop), so a looping handler could never be stopped. This xpcall runs the handler
-- after the failed call instead, where the hook still applies.
local pcall, pack, tunpack = pcall, table.pack, table.unpack
xpcall = function(f, handler, ...)
  local r = pack(pcall(f, ...))
  if r[1] then return tunpack(r, 1, r.n) end
  local _, v = pcall(handler, r[2])
  return false, v
end
-- A coroutine that a budget stop killed keeps hooks off for good, and closing it runs its
-- pending <close> handlers there, unstoppable. So a dead coroutine is never closed (its
-- handlers are skipped), and wrap does not close the coroutine on an error (as in Lua 5.3).
local co_create, co_resume, co_status, co_close, error = coroutine.create, coroutine.resume, coroutine.status, coroutine.close, error
coroutine.close = function(co)
  if co_status(co) == 'dead' then return true end
  return co_close(co)
end
coroutine.wrap = function(f)
  local co = co_create(f)
  return function(...)
    local r = pack(co_resume(co, ...))
    if r[1] then return tunpack(r, 2, r.n) end
    error(r[2], 0)
  end
end
-- A finalizer would run whenever the collector likes, outside any budgeted call (and at the
-- close of the state), where a loop could stall the process: no __gc in scripts.
local raw_setmetatable, rawget, type = setmetatable, rawget, type
setmetatable = function(t, mt)
  if type(mt) == 'table' and rawget(mt, '__gc') ~= nil then error('__gc metamethods are not available to scripts', 2) end
  return raw_setmetatable(t, mt)
end
os = os_keep
io = nil
debug = nil
package = nil
require = nil
dofile = nil
loadfile = nil
`;
