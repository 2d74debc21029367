-- ARGV[3]: 'slots' to list slot metadata, 'since' to return changes after ARGV[4] ('' for none).
local room = load_room()
if not room then return {'no_room'} end
reap(room)
local out = {'ok', num(room.created), num(room.version), num(room.deadline),
             room.next and num(room.next) or ''}
if ARGV[3] == 'slots' then
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) == 'm:' then
      out[#out + 1] = string.sub(all[i], 3)
      out[#out + 1] = all[i + 1]
    end
  end
  return out
end
local after = ARGV[4]
if after == '' then
  out[#out + 1] = 'complete'
  return out
end
after = tonumber(after)
local version = room.version
local function version_of(json) return tonumber(string.match(json, '^{"version":(%d+)')) end
-- Only the tail the caller lacks: the last (version - after) entries, when the log holds them.
if after > version then
  out[#out + 1] = 'truncated'
  return out
end
if after == version then
  out[#out + 1] = 'complete'
  return out
end
local wanted = version - after
-- The log may hold up to twice log_len changes (see emit); serve no more than log_len.
if wanted > log_len then
  out[#out + 1] = 'truncated'
  return out
end
local log = redis.call('LRANGE', KEYS[3], -wanted, -1)
if #log < wanted or version_of(log[1]) ~= after + 1 then
  out[#out + 1] = 'truncated'
  return out
end
out[#out + 1] = 'complete'
for i = 1, #log do out[#out + 1] = log[i] end
return out
