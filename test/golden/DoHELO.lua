-- DoHELO(host, bRefuse, bEHLO) -> bRefuse, response. A true bRefuse closes the connection after
-- the response (default 554 5.7.1); a 4xx/5xx response alone refuses just the command.
function DoHELO(host, refuse, ehlo)
  print(string.format("HeloName before: %q", HeloName))
  if host == "bad.example.test" then return true, "" end
  if host == "reject.example.test" then return false, "550 5.7.1 Not with that name" end
  if not ehlo then return false, "250 mx.example.test Lua greets HELO " .. host end
  return false, ""
end
