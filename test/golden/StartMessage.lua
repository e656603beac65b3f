-- StartMessage(): after the 354 (or at the first BDAT chunk), before the first line.
function StartMessage()
  print(string.format("StartMessage: MailFrom %q, HeloName %q", MailFrom, HeloName))
end
