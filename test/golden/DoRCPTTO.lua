-- DoRCPTTO(data, recipient, params, recipients) -> params, result. recipients: those accepted
-- so far; params.RCPTTO replaces the recipient; a 2xx accepts even what the default policy
-- refuses (S16).
function DoRCPTTO(data, rcpt, params, list)
  if rcpt == "blocked@localhost" then return params, "550 5.7.1 Blocked by Lua" end
  if rcpt == "old@localhost" then
    params.RCPTTO = "<new@localhost>"
    return params, ""
  end
  if rcpt == "partner@remote.test" then return params, "250 2.1.5 Relaying for a partner" end
  if #list >= 4 then return params, "452 4.5.3 Lua says that is enough" end
  return params, ""
end
