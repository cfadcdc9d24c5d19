-- wrk script: JSON POSTs of about 8 KiB, an order of 23 line items (about 335 values).
-- `-- same`: one body for every request. `-- distinct`: a new body per request (every id,
-- name, note and path carries a per-request token), so no memo can answer from an earlier one.
local mode = "same"
local parts = {} -- the body split at each "@": odd slots text, even slots the token
local counter = 0

local item = '{"sku":"SKU-@-%02d","name":"Organic cotton shirt @ size M","qty":%d,'
  .. '"price":"19.99","currency":"EUR","color":"navy blue","size":"M","gift":false,'
  .. '"note":"Please wrap item %02d of order @ separately","warehouse":"north-%02d",'
  .. '"discount":"0.00","tax":"3.80","category":"apparel/shirts",'
  .. '"image":"/static/img/@-%02d.jpg"}'

local function build()
  local items = {}
  for i = 1, 23 do
    items[i] = string.format(item, i, i % 3 + 1, i, i % 4, i)
  end
  return '{"order":"ORD-@","customer":{"id":"cust-@","name":"Alex Example",'
    .. '"email":"alex.@@shop.example","phone":"+44 20 7946 0958","locale":"en-GB",'
    .. '"address":{"line1":"221B Baker Street","city":"London","postcode":"NW1 6XE",'
    .. '"country":"GB"}},"items":[' .. table.concat(items, ",") .. '],'
    .. '"shipping":{"method":"standard","price":"4.99"},"coupon":"SPRING-@",'
    .. '"comment":"Leave the parcel with the neighbour at number 12 if nobody is home"}'
end

function init(args)
  mode = args[1] or "same"
  local template = build()
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
