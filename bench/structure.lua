-- Scenario f: ProcessMessage reads the MIME structure and the attachments tables.
function ProcessMessage(mailfrom, subject, recipients, actions, structure, size, attachments)
  local bytes, parts, named, risky = 0, 0, 0, 0
  for _, p in ipairs(structure) do
    parts = parts + 1
    bytes = bytes + (p.End - p.Start)
    local fn = (p.ContentDispositionFilename ~= "" and p.ContentDispositionFilename) or p.ContentTypeFilename
    if fn ~= "" then named = named + 1 end
  end
  local asize = 0
  for _, a in ipairs(attachments) do
    asize = asize + a.Size
    local n = string.lower(a.Name)
    if n:find("%.exe$") or n:find("%.scr$") or n:find("%.js$") then risky = risky + 1 end
  end
  if risky > 0 then
    actions.Ignore, actions.Delete, actions.Reason = true, true, "550 5.7.1 Executable attachment"
  else
    local ok = parts >= 7 and named == 5 and #attachments == 5 and asize > 0 and bytes > size
    actions.HeaderModifiers = { "X-Bench-Structure: " .. (ok and "ok" or ("unexpected " .. parts .. "/" .. named .. "/" .. #attachments .. "/" .. asize)) }
  end
  return actions
end
