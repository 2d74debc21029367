local created, version, deadline = load_room()
if not created then return {'no_room'} end
version = reap(version, deadline)
local json = cjson.encode({room = code, version = version + 1, op = 'room_deleted', at = now,
                           room_expires_at = now})
drop_room()
redis.call('PUBLISH', channel, json)
return {'ok', json}
