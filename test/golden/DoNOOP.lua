-- DoNOOP() -> the reply to NOOP. Also shows S4/S5/S25 on the simplest callback: a runtime error
-- or a reply without a code means the default reply; ForceDisconnect closes after the reply;
-- a callback over its budget gets 451 4.3.0 and the script is off for the rest of the session.
local calls = 0
function DoNOOP()
  calls = calls + 1
  print("call " .. calls)
  if calls == 1 then return "" end
  if calls == 2 then return "250 2.0.0 Lua did nothing" end
  if calls == 3 then error("oops in call " .. calls) end
  if calls == 4 then return "no code here" end
  if calls == 5 then while true do end end
  return "250 never reached"
end

function End()
  print("End is not called either: the script is off")
end
