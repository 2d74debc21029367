-- ARGV[3] slot, [4] precondition ('' | '*' | version).
local slot = ARGV[3]
local room = load_room(slot)
if not room then return {'no_room'} end
if room.next and now >= room.next then
  reap(room)
  room.slot_meta = redis.call('HGET', KEYS[1], 'm:' .. slot)
end
if not room.slot_meta then return {'no_slot'} end
local cur_version = slot_version(room.slot_meta)
if not precondition_ok(ARGV[4], cur_version) then return {'precondition', tostring(cur_version)} end
redis.call('HDEL', KEYS[2], slot)
redis.call('HDEL', KEYS[1], 'm:' .. slot)
room.version = room.version + 1
room.slots = room.slots - 1
refresh_deadline(room)
local json = emit(room, 'delete', slot)
expire_keys(room)
redis.call('HSET', KEYS[1], '_state', state(room))
return {'ok', json}
