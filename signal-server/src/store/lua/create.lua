local room = load_room()
if room then return {'exists'} end
-- Leftovers of an expired room must not leak into the new one.
drop_room()
local deadline = math.min(now + idle, now + max_age)
local room = {created = now, version = 0, deadline = deadline, slots = 0, kexp = deadline}
redis.call('HSET', KEYS[1], '_state', state(room))
redis.call('PEXPIREAT', KEYS[1], deadline)
return {'ok', num(now), '0', num(deadline)}
