-- DoQUIT() -> the reply to QUIT ("" = default); the connection closes either way.
function DoQUIT()
  return "221 2.0.0 Goodbye " .. HeloName .. ", from Lua"
end
