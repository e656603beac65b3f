-- End(): once when the session ends, for any reason, if Start ran (S10).
local commands = 0
function DoNOOP()
  commands = commands + 1
  return ""
end

function End()
  print(string.format("End after %d NOOP(s); MailFrom %q", commands, MailFrom))
end
