-- GetMaxMessageSize(host, size): at the start with the client's address, then at every
-- HELO/EHLO with its argument. Returns the new limit in bytes (0 = no limit).
function GetMaxMessageSize(host, size)
  if host == "small.example.test" then return 100 end
  if host == "huge.example.test" then return 0 end
  return size
end
