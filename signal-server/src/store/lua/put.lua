-- ARGV[7] slot, [8] data, [9] content type, [10] precondition ('' | '*' | version),
-- [11] blob ttl ms or '', [12] max slots.
local slot = ARGV[7]
local room = load_room(slot)
if not room then return {'no_room'} end
if room.next and now >= room.next then
  reap(room)
  room.slot_meta = redis.call('HGET', KEYS[1], 'm:' .. slot)
end
local cur_version = nil
if room.slot_meta then cur_version = parse_slot(room.slot_meta) end
if not precondition_ok(ARGV[10], cur_version) then
  return {'precondition', tostring(cur_version or '')}
end
if not cur_version then
  if room.slots >= tonumber(ARGV[12]) then return {'too_many_slots'} end
  room.slots = room.slots + 1
end
room.version = room.version + 1
refresh_deadline(room)
local size = string.len(ARGV[8])
local expires = ''
if ARGV[11] ~= '' then
  expires = math.min(now + tonumber(ARGV[11]), room.deadline)
  if not room.next or expires < room.next then room.next = expires end
end
-- A first field creates the data hash, which then needs its TTL.
if redis.call('HSET', KEYS[2], slot, ARGV[8]) == 1 and room.slots == 1 then room.new_keys = true end
local extra = ',"size":' .. num(size) .. ',"content_type":' .. str(ARGV[9])
if expires ~= '' then extra = extra .. ',"expires_at":' .. num(expires) end
local json = emit(room, 'put', slot, extra)
expire_keys(room)
redis.call('HSET', KEYS[1], 'm:' .. slot, num(room.version) .. '|' .. (expires == '' and '' or num(expires)) ..
  '|' .. num(size) .. '|' .. ARGV[9], '_version', room.version, '_deadline', room.deadline,
  '_slots', room.slots, '_next', room.next or '', '_kexp', room.kexp)
return {'ok', json}
