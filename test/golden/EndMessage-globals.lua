-- The read-only globals are set before EndMessage as before every callback (S7): the
-- transaction is still the current one.
function EndMessage()
  print(string.format("MailFrom %q, HeloName %q", MailFrom, HeloName))
  return ""
end
