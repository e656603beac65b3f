-- GetEHLOCapabilities(host, caps): caps are the EHLO keyword lines joined by CRLF; the
-- returned string is advertised. A removed extension is switched off for the session (S11).
function GetEHLOCapabilities(host, caps)
  local out = {}
  for line in caps:gmatch("[^\r\n]+") do
    if line ~= "STARTTLS" and line ~= "8BITMIME" then out[#out + 1] = line end
  end
  out[#out + 1] = "X-LUA-EXTENSION yes"
  return table.concat(out, "\r\n")
end
