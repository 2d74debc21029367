-- Several puts in one call (standalone Redis only: their rooms' keys may sit in any slot).
-- KEYS: three per put, as for put. ARGV: eight per put, as for put.
-- Answers two entries per put: its status, and the change JSON ('ok'), the current version
-- ('precondition') or ''. The puts run in order, each exactly as a lone put would; their changes
-- are published together at the end, in order.
local keys, args = KEYS, ARGV
local out, batch = {}, {}
local function run_all()
  for i = 0, #keys / 3 - 1 do
    local k, a = 3 * i, 8 * i
    begin({keys[k + 1], keys[k + 2], keys[k + 3]},
          {args[a + 1], args[a + 2], args[a + 3], args[a + 4], args[a + 5], args[a + 6],
           args[a + 7], args[a + 8]}, batch)
    local r = put_blob()
    out[2 * i + 1] = r[1]
    out[2 * i + 2] = r[2] or ''
  end
end
-- A failing redis.call aborts the script but keeps the writes before it: their changes must
-- still reach watchers.
local ok, err = pcall(run_all)
publish_batch(batch)
if not ok then error(err) end
return out
