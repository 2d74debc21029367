-- ARGV[7] slot.
local created, version, deadline = load_room()
if not created then return {'no_room'} end
reap(version, deadline)
local meta = redis.call('HGET', KEYS[2], ARGV[7])
if not meta then return {'no_slot'} end
return {'ok', meta, redis.call('HGET', KEYS[3], ARGV[7])}
