-- DoEXPN(recipients, current) -> the reply. By default only local or authenticated clients get
-- the list (S14); this script answers the others with 252 instead of 502.
function DoEXPN(list, current)
  if current:sub(1, 3) == "502" and #list > 0 then return "252 2.1.5 Lua will not tell you" end
  return current
end
