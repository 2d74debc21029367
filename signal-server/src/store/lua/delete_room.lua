local room = load_room()
if not room then return {'no_room'} end
reap(room)
room.version = room.version + 1
room.deadline = now
drop_room()
-- Not logged: the log goes with the room. Watchers get it from the channel, late ones see no room.
local json = '{"version":' .. num(room.version) .. ',"room":"' .. code .. '"' ..
  ',"op":"room_deleted","at":' .. num(now) .. ',"room_expires_at":' .. num(now) .. '}'
redis.call('PUBLISH', channel, json)
return {'ok', json}
