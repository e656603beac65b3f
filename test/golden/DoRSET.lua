-- DoRSET() -> the reply to RSET; the transaction is reset whatever it returns.
function DoRSET()
  return "250 2.0.0 Flushed by Lua"
end
