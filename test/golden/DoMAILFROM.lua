-- DoMAILFROM(data, mailfrom, params, spf, authSender) -> params, result. params.MAILFROM replaces
-- the return path (S15).
function DoMAILFROM(data, from, params, spf, auth)
  if from == "spam@bad.test" then return params, "550 5.7.1 Sender refused by Lua" end
  if from == "old@example.test" then
    params.MAILFROM = "new@example.test"
    return params, "250 2.1.0 Sender rewritten by Lua"
  end
  return params, ""
end
