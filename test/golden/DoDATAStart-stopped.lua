-- DoDATAStart over its budget at the first BDAT chunk: 451 4.3.0 (S4). The chunk is still
-- read as data (RFC 3030): none of its octets may be taken as commands.
function DoDATAStart(list)
  while true do end
end
