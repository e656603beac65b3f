-- Scenario g: CheckFile reads the header (HeaderData and every HeaderLines entry).
function CheckFile(Filename, Actions, Size, CreationTime, ReturnPath, Recipients, HeaderData, HeaderLines)
  local subject = HeaderData["subject"] or ""
  local received = 0
  for _, l in ipairs(HeaderLines) do
    if l:find("^[Rr]eceived:") then received = received + 1 end
  end
  if subject:find("^NEVER SEND") or received > 30 then
    Actions.SkipSend, Actions.Reason = true, "loop or test message"
  elseif Size > 100000 then
    Actions.Priority = 10
  else
    Actions.Priority = 60
  end
  return Actions
end
