-- EndMessage() -> "" or a result after the final "."; 4xx/5xx refuses the message (S18).
local calls = 0
function EndMessage()
  calls = calls + 1
  print("EndMessage call " .. calls)
  if calls == 1 then return "550 5.7.1 Refused by Lua" end
  if calls == 2 then return "250 2.0.0 Accepted by Lua" end
  return ""
end
