-- wrk script: JSON POSTs of about 8 KiB, an order of 23 line items (about 335 values), read
-- from `json_order.txt` (its path the second argument), where each "@" stands for the order's
-- token. `-- same PATH`: one body for every request. `-- distinct PATH`: a new token per
-- request (in every id, name, note and path), so no memo can answer from an earlier one.
-- `bench/engine.py` times the same orders through the engine alone.
local mode = "same"
local parts = {} -- the body split at each "@": odd slots text, even slots the token
local counter = 0

function init(args)
  mode = args[1] or "same"
  local file = assert(io.open(assert(args[2], "the path of json_order.txt"), "rb"))
  local template = file:read("*a"):gsub("\n$", "")
  file:close()
  local start = 1
  for text, stop in template:gmatch("([^@]*)@()") do
    parts[#parts + 1] = text
    parts[#parts + 1] = "5f3a9c21"
    start = stop
  end
  parts[#parts + 1] = template:sub(start)
  wrk.method = "POST"
  wrk.path = "/checkout"
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = table.concat(parts)
end

-- The token of request `counter`, as `bench/engine.py`'s `order_token` makes it.
-- Filling the token slots and joining costs wrk a few µs per request; a `gsub` over the
-- template costs it tens, and then wrk, not the proxy, sets the pace of the fast rows.
request = function()
  if mode ~= "distinct" then
    return wrk.format()
  end
  counter = counter + 1
  local token = string.format("%08x", (counter * 2654435761) % 4294967296)
  for i = 2, #parts, 2 do
    parts[i] = token
  end
  return wrk.format(nil, nil, nil, table.concat(parts))
end
