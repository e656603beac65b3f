-- ForceDisconnect set in a callback: the reply is sent, then the connection closes (S25).
function DoNOOP()
  ForceDisconnect = 1
  return "250 2.0.0 Last NOOP"
end

function End()
  print("End; ForceDisconnect is " .. (ForceDisconnect and "set" or "clear"))
end
