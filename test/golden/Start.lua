-- Start(): before the greeting. "" keeps the default greeting, a string with a code replaces
-- it, 4xx/5xx refuses the connection (End still runs). The globals are set before the call.
function Start()
  print(string.format("IPAddress=%q ValidClientAddress=%s LocalClientAddress=%s", IPAddress, ValidClientAddress, LocalClientAddress))
  print(string.format("Encryption=%s EncryptionDetails=%q", Encryption, EncryptionDetails))
  print(string.format("AuthenticatedUser=%q SMTPAuthenticatedUser=%q", AuthenticatedUser, SMTPAuthenticatedUser))
  print(string.format("ServerID=%d ServerName=%q SessionID=%q", ServerID, ServerName, SessionID))
  if IPAddress == "192.0.2.66" then return "554 5.7.1 No mail from you" end
  if IPAddress == "192.0.2.1" then return "" end
  return "220 mx.example.test greeted by Lua\r\n220 a second line"
end

function End()
  print("End")
end
