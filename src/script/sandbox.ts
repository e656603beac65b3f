/**
 * Run in every fresh state before the script (S1): keeps base, string, table, math, utf8,
 * coroutine and four os functions; removes io, debug, package, dofile, loadfile, string.dump
 * and binary chunks; adds the Lua 5.1/5.2 names old VPOP3 scripts use. The traceback handler
 * for protected calls is left in the registry, where no script can reach it.
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
os = os_keep
io = nil
debug = nil
package = nil
require = nil
dofile = nil
loadfile = nil
`;
