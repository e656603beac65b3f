-- SMTPSVR.LUA for the benchmark (scenarios d and e): defines every hook the issue lists and does
-- light, realistic work in each. Self-checks that the benchmark relies on:
--   * Start() replaces the greeting with one ending in "(scripted)": the idle holder counts those;
--   * DoDATAStart() adds "X-Bench-Script: all-hooks": the delivered files are checked for it;
--   * EndMessage() refuses a message for which MessageLine() saw no lines, so a broken line path
--     shows up as missing deliveries.

local LocalDomains = { ["bench.test"] = true, ["source.bench.test"] = true }
local BlockedSenders = { "^spam@", "^bulk%-", "@spam%." }

local Sessions, Messages, Lines, Bytes, Flagged = 0, 0, 0, 0, 0
local helo = ""

function Start()
  Sessions = Sessions + 1
  if IPAddress == "" then return "421 4.3.0 no client address" end
  return "220 bench.test ESMTP moonpost (scripted)"
end

function GetMaxMessageSize(host, current)
  if current == 0 or current > 52428800 then return 52428800 end
  return current
end

function GetEHLOCapabilities(host, caps)
  -- Hide VRFY-like extras a policy might not want; keep the rest as it is.
  return (caps:gsub("\r\nVRFY", ""))
end

function DoHELO(host, refuse, ehlo)
  helo = host
  if host == "" or host:find("[^%w%.%-%[%]:]") then return true, "501 5.5.4 bad HELO name" end
  return refuse, ""
end

function DoHELP(text)
  return text .. "\r\nbenchmark script active"
end

function DoQUIT() return "" end
function DoNOOP() return "" end
function DoRSET() return "" end

function DoVRFY(recipients, current)
  if #recipients == 0 then return "252 2.1.5 Cannot VRFY user" end
  return current
end

function DoEXPN(recipients, current) return current end

function DoMAILFROM(data, mailfrom, params, spf, authSender)
  local lower = mailfrom:lower()
  for _, p in ipairs(BlockedSenders) do
    if lower:find(p) then return params, "550 5.7.1 sender blocked by policy" end
  end
  if mailfrom ~= "" and not mailfrom:match("^[%w%.%-_+=]+@[%w%.%-]+$") then
    return params, "553 5.1.7 malformed sender address"
  end
  return params, ""
end

function DoRCPTTO(data, recipient, params, recipients)
  local domain = recipient:match("@([^@]+)$")
  if not domain or not LocalDomains[domain:lower()] then
    return params, "550 5.7.1 relaying denied by script"
  end
  if #recipients >= 100 then return params, "452 4.5.3 too many recipients" end
  return params, ""
end

function DoDATAStart(recipients)
  return "", "X-Bench-Script: all-hooks\r\nX-Bench-Recipients: " .. #recipients
end

function DoUnrecognised(line)
  return "500 5.5.2 unrecognised: " .. line:sub(1, 20)
end

function StartMessage()
  Messages = Messages + 1
  Lines, Bytes, Flagged = 0, 0, 0
end

function MessageLineRaw(line)
  Bytes = Bytes + #line
  if #line > 998 then Flagged = Flagged + 1 end
end

function MessageLine(line)
  Lines = Lines + 1
  if line:match("[Vv][Ii][Aa][Gg][Rr][Aa]") then Flagged = Flagged + 1 end
  return nil
end

function EndMessage()
  if Lines == 0 then return "451 4.3.0 benchmark script saw no message lines" end
  if Flagged > 3 then return "554 5.7.1 message looks like spam" end
  return ""
end

function End()
  helo = ""
end
