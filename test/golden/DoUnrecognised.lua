-- DoUnrecognised(line) -> the reply to a command the server does not know ("" = default).
function DoUnrecognised(line)
  if line:upper():sub(1, 5) == "XYZZY" then return "250 2.0.0 Nothing happens" end
  if line == "QUIET" then return "" end
  -- A reply cannot smuggle in another one: every line gets the first line's code (S5).
  if line == "INJECT" then return "500 5.5.2 first\r\n250 2.0.0 injected" end
  return "502 5.5.1 Lua does not know \"" .. line .. "\""
end
