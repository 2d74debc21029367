-- Several puts in one call (standalone Redis only: their rooms' keys may sit in any slot).
-- KEYS and ARGV as for put_run (put.lua). Consecutive puts in one room run together. Answers
-- two entries per put (see put_run); their changes are published together at the end, in
-- order.
local keys, args = KEYS, ARGV
local out, batch = {}, {}
local function run_all()
  local puts = #keys / 3
  local first = 0
  while first < puts do
    local last = first
    while last + 1 < puts and keys[3 * last + 4] == keys[3 * first + 1] do last = last + 1 end
    put_run(keys, args, first, last, out, batch)
    first = last + 1
  end
end
-- A failing redis.call aborts the script but keeps the writes before it: their changes must
-- still reach watchers.
local ok, err = pcall(run_all)
publish_batch(batch)
if not ok then error(err) end
return out
