-- ARGV[3] slot, [4] data, [5] content type, [6] precondition ('' | '*' | version),
-- [7] blob ttl ms or '', [8] content type as a JSON string literal.
local slot = ARGV[3]
local room = load_room(slot)
if not room then return {'no_room'} end
if room.next and now >= room.next then
  reap(room)
  room.slot_meta = redis.call('HGET', KEYS[1], 'm:' .. slot)
end
local cur_version = nil
if room.slot_meta then cur_version = slot_version(room.slot_meta) end
if not precondition_ok(ARGV[6], cur_version) then
  return {'precondition', tostring(cur_version or '')}
end
if not cur_version then
  if room.slots >= max_slots then return {'too_many_slots'} end
  room.slots = room.slots + 1
end
room.version = room.version + 1
refresh_deadline(room)
local size = string.len(ARGV[4])
local expires = ''
if ARGV[7] ~= '' then
  expires = math.min(now + tonumber(ARGV[7]), room.deadline)
  if not room.next or expires < room.next then room.next = expires end
end
-- A first field creates the data hash, which then needs its TTL.
if redis.call('HSET', KEYS[2], slot, ARGV[4]) == 1 and room.slots == 1 then room.new_keys = true end
local size_s = num(size)
local expires_s = expires == '' and '' or num(expires)
local json = emit(room, 'put', slot, ',"size":' .. size_s .. ',"content_type":' .. ARGV[8] ..
  (expires == '' and '' or (',"expires_at":' .. expires_s)))
expire_keys(room)
redis.call('HSET', KEYS[1], 'm:' .. slot,
           num(room.version) .. '|' .. expires_s .. '|' .. size_s .. '|' .. ARGV[5],
           '_state', state(room))
return {'ok', json}
