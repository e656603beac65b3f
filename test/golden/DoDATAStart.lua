-- DoDATAStart(recipients) -> result, headers. A 4xx/5xx refuses DATA; headers (a string of
-- CRLF-separated lines, or an array of lines) go at the start of the message header (S17).
local calls = 0
function DoDATAStart(list)
  calls = calls + 1
  if calls == 1 then return "554 5.7.1 Not now", "" end
  if calls == 2 then return "", { "X-First: 1", "X-Second: " .. #list } end
  -- An empty line would end the header: it is dropped.
  return "", "X-Via-BDAT: yes\r\n\r\nX-After-Empty: kept"
end
