-- ARGV[7] slot, [8] precondition ('' | '*' | version).
local created, version, deadline = load_room()
if not created then return {'no_room'} end
version = reap(version, deadline)
local slot = ARGV[7]
local cur = redis.call('HGET', KEYS[2], slot)
if not cur then return {'no_slot'} end
local cur_version = parse_slot(cur)
if not precondition_ok(ARGV[8], cur_version) then return {'precondition', tostring(cur_version)} end
redis.call('HDEL', KEYS[2], slot)
redis.call('HDEL', KEYS[3], slot)
version = version + 1
deadline = touch(created, version)
return {'ok', emit({room = code, version = version, op = 'delete', slot = slot, at = now,
                    room_expires_at = deadline}, deadline)}
