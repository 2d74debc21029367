local room = load_room()
if room then return {'exists'} end
-- Leftovers of an expired room must not leak into the new one.
drop_room()
local deadline = math.min(now + idle, now + max_age)
redis.call('HSET', KEYS[1], '_created', now, '_version', 0, '_deadline', deadline, '_slots', 0,
           '_kexp', deadline)
redis.call('PEXPIREAT', KEYS[1], deadline)
return {'ok', num(now), '0', num(deadline)}
