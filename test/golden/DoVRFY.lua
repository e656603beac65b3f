-- DoVRFY(recipients, current) -> the reply. recipients: what the argument resolves to through
-- users, aliases and lists (S14); current: the reply without a script.
function DoVRFY(list, current)
  if #list == 0 then return "550 5.1.1 No such user here" end
  if #list == 1 then return "250 2.1.5 <" .. list[1] .. ">" end
  return current
end
