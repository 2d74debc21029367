-- ARGV[7]: 'slots' to list slot metadata, 'since' to return changes after ARGV[8] ('' for none).
local created, version, deadline = load_room()
if not created then return {'no_room'} end
local next_expiry
version, next_expiry = reap(version, deadline)
local out = {'ok', tostring(created), tostring(version), tostring(deadline), tostring(next_expiry or '')}
if ARGV[7] == 'slots' then
  local all = redis.call('HGETALL', KEYS[2])
  for i = 1, #all do out[#out + 1] = all[i] end
  return out
end
local after = ARGV[8]
if after == '' then
  out[#out + 1] = 'complete'
  return out
end
after = tonumber(after)
local log = redis.call('LRANGE', KEYS[4], 0, -1)
local oldest = nil
if #log > 0 then oldest = tonumber(string.match(log[1], '"version":(%d+)')) end
if after > version or (after < version and (not oldest or oldest > after + 1)) then
  out[#out + 1] = 'truncated'
  return out
end
out[#out + 1] = 'complete'
for i = 1, #log do
  if tonumber(string.match(log[i], '"version":(%d+)')) > after then out[#out + 1] = log[i] end
end
return out
