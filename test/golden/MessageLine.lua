-- MessageLine(line): the line as it will be stored (unstuffed). Return nothing to keep it, a
-- string to replace it (CRLF inside makes several lines), false to drop it (S18).
function MessageLine(line)
  if line:match("^Subject:") then return line .. " [checked by Lua]" end
  if line:find("secret") then return false end
  if line == "SPLIT" then return "first half\r\nsecond half" end
  if line == "ANSWER" then return 42 end
  if line == ".dot" then return nil end
end
