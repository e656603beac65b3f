/**
 * Run in every fresh state before the script (S1): keeps base, string, table, math, utf8,
 * coroutine and four os functions; removes io, debug, package, dofile, loadfile, string.dump,
 * binary chunks and __gc metamethods; replaces xpcall, coroutine.wrap and coroutine.close with
 * versions that a budget stop cannot get past; adds the Lua 5.1/5.2 names old VPOP3 scripts
 * use. The traceback handler for protected calls is left in the registry, where no script can
 * reach it.
 */
export const SANDBOX_PRELUDE = `
local traceback = debug.traceback
debug.getregistry()['moonpost.traceback'] = function(msg)
  if type(msg) ~= 'string' then msg = tostring(msg) end
  return traceback(msg, 2)
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
