-- ARGV[3] slot.
local slot = ARGV[3]
local room = load_room(slot)
if not room then return {'no_room'} end
if room.next and now >= room.next then
  reap(room)
  room.slot_meta = redis.call('HGET', KEYS[1], 'm:' .. slot)
end
if not room.slot_meta then return {'no_slot'} end
return {'ok', room.slot_meta, redis.call('HGET', KEYS[2], slot)}
