if load_room() then return {'exists'} end
-- Leftovers of an expired room must not leak into the new one.
drop_room()
local deadline = math.min(now + idle, now + max_age)
redis.call('HSET', KEYS[1], 'created', now, 'version', 0, 'deadline', deadline)
redis.call('PEXPIREAT', KEYS[1], deadline)
return {'ok', tostring(now), '0', tostring(deadline)}
