-- ARGV[7] slot, [8] data, [9] content type, [10] precondition ('' | '*' | version),
-- [11] blob ttl ms or '', [12] max slots.
local created, version, deadline = load_room()
if not created then return {'no_room'} end
version = reap(version, deadline)
local slot = ARGV[7]
local cur = redis.call('HGET', KEYS[2], slot)
local cur_version = nil
if cur then cur_version = parse_slot(cur) end
if not precondition_ok(ARGV[10], cur_version) then
  return {'precondition', tostring(cur_version or '')}
end
if not cur and redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[12]) then return {'too_many_slots'} end
version = version + 1
local size = string.len(ARGV[8])
redis.call('HSET', KEYS[3], slot, ARGV[8])
local new_deadline = math.min(now + idle, created + max_age)
local expires = ''
if ARGV[11] ~= '' then expires = math.min(now + tonumber(ARGV[11]), new_deadline) end
redis.call('HSET', KEYS[2], slot, version .. '|' .. expires .. '|' .. size .. '|' .. ARGV[9])
deadline = touch(created, version)
local change = {room = code, version = version, op = 'put', slot = slot, size = size,
                content_type = ARGV[9], at = now, room_expires_at = deadline}
if expires ~= '' then change.expires_at = expires end
return {'ok', emit(change, deadline)}
