-- MessageLineRaw(line): every line as received, CRLF removed, dot-stuffing still present; what
-- it returns is ignored (S18).
function MessageLineRaw(line)
  print(string.format("raw line of %d octets: %q", #line, line))
  return false
end
