-- wrk script: every request distinct (path id, query values, session cookie), as real
-- browsers are, so no per-request memo in the engine can answer from an earlier request.
local counter = 0

request = function()
  counter = counter + 1
  local path = string.format("/products/%d?ref=home&page=%d&q=item+%d", counter % 5000,
    counter % 40, (counter * 7919) % 100000)
  local cookie = string.format("session=%08x; theme=dark", (counter * 2654435761) % 4294967296)
  wrk.headers["Cookie"] = cookie
  return wrk.format("GET", path)
end
