import type { TestClient } from './smtp-client.js';

/**
 * A Lua prelude for end-of-data tests: callbacks record what they saw with `put(key, value)`
 * (any Lua value; tables become JSON, strings keep their bytes) and `note(text)` (an ordered
 * list, OUT.order), and `DoNOOP` hands everything back, JSON encoded and hex-transported, in
 * one multi-line 250 reply that `report()` decodes. Pure Lua, so the channel itself depends on
 * none of the server's helpers. A test script may define its own DoNOOP after the prelude.
 */
export const REPORT_PRELUDE = String.raw`
OUT = { order = {} }
function put(k, v) OUT[k] = v end
function note(s) local o = OUT.order; o[#o + 1] = s end
local function J(v)
  local t = type(v)
  if t == "table" then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    local n = #v
    if n > 0 or #keys == 0 then
      local out = {}
      for i = 1, n do out[i] = J(v[i]) end
      return "[" .. table.concat(out, ",") .. "]"
    end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local out = {}
    for _, k in ipairs(keys) do out[#out + 1] = J(tostring(k)) .. ":" .. J(v[k]) end
    return "{" .. table.concat(out, ",") .. "}"
  elseif t == "string" then
    return '"' .. (v:gsub('[%c"\\\128-\255]', function(c) return string.format("\\u%04x", c:byte()) end)) .. '"'
  elseif t == "number" or t == "boolean" then
    return tostring(v)
  elseif t == "nil" then
    return "null"
  end
  return '"<' .. t .. '>"'
end
JSON = J
function REPORT()
  local hex = (J(OUT):gsub(".", function(c) return string.format("%02x", c:byte()) end))
  local lines = {}
  for i = 1, #hex, 400 do lines[#lines + 1] = "250-" .. hex:sub(i, i + 399) end
  lines[#lines + 1] = "250 end"
  return table.concat(lines, "\r\n")
end
function DoNOOP() return REPORT() end
`;

/**
 * What the script recorded, read with NOOP. Strings are decoded one byte per character (the
 * JSON escapes carry bytes, not UTF-8), so compare them with latin1 text.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function report(c: TestClient): Promise<any> {
  const r = await c.cmd('NOOP');
  if (r.code !== 250 || r.lines[r.lines.length - 1] !== '250 end') throw new Error(`no report: ${r.raw}`);
  const hex = r.lines
    .slice(0, -1)
    .map((l) => l.slice(4))
    .join('');
  return JSON.parse(Buffer.from(hex, 'hex').toString('latin1'));
}

/** A string of bytes (latin1) from the UTF-8 text of `s`: how a Lua string holding UTF-8 reads back. */
export const utf8Bytes = (s: string): string => Buffer.from(s, 'utf8').toString('latin1');
