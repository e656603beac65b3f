-- DoHELP(text) -> new help text; lines without a code get 214 (S13).
local calls = 0
function DoHELP(text)
  calls = calls + 1
  if calls == 1 then return text .. "\r\nAsk postmaster@example.test" end
  if calls == 2 then return "214-Coded by Lua\r\n214 End of help" end
  return ""
end
