-- Shared by every room script. KEYS: meta, slots, data, log (one hash tag).
-- ARGV: now_ms, code, channel, idle_ms, max_age_ms, log_len, then the script's own.
local now = tonumber(ARGV[1])
local code = ARGV[2]
local channel = ARGV[3]
local idle = tonumber(ARGV[4])
local max_age = tonumber(ARGV[5])
local log_len = tonumber(ARGV[6])

local function drop_room()
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
end

-- created, version, deadline of the live room; nil (and its keys dropped) once past the deadline.
local function load_room()
  local m = redis.call('HMGET', KEYS[1], 'created', 'version', 'deadline')
  if not m[1] then return nil end
  local deadline = tonumber(m[3])
  if now >= deadline then drop_room() return nil end
  return tonumber(m[1]), tonumber(m[2]), deadline
end

-- slot meta is "version|expires_ms or empty|size|content type"
local function parse_slot(s)
  local v, e, size, ctype = string.match(s, '^(%d+)|(%d*)|(%d+)|(.*)$')
  return tonumber(v), tonumber(e), tonumber(size), ctype
end

local function emit(change, deadline)
  local json = cjson.encode(change)
  redis.call('RPUSH', KEYS[4], json)
  redis.call('LTRIM', KEYS[4], -log_len, -1)
  redis.call('PEXPIREAT', KEYS[4], deadline)
  redis.call('PUBLISH', channel, json)
  return json
end

-- Removes blobs past their own TTL, logging each; returns the new version and the next blob expiry.
local function reap(version, deadline)
  local all = redis.call('HGETALL', KEYS[2])
  local next_expiry = nil
  local changed = false
  for i = 1, #all, 2 do
    local _, e = parse_slot(all[i + 1])
    if e and now >= e then
      redis.call('HDEL', KEYS[2], all[i])
      redis.call('HDEL', KEYS[3], all[i])
      version = version + 1
      changed = true
      emit({room = code, version = version, op = 'expire', slot = all[i], at = now,
            room_expires_at = deadline}, deadline)
    elseif e and (not next_expiry or e < next_expiry) then
      next_expiry = e
    end
  end
  if changed then redis.call('HSET', KEYS[1], 'version', version) end
  return version, next_expiry
end

-- After a client write: bump the idle deadline (capped by max age) on every key of the room.
local function touch(created, version)
  local deadline = math.min(now + idle, created + max_age)
  redis.call('HSET', KEYS[1], 'version', version, 'deadline', deadline)
  for i = 1, 4 do redis.call('PEXPIREAT', KEYS[i], deadline) end
  return deadline
end

local function precondition_ok(pre, current)
  if pre == '' then return true end
  if pre == '*' then return current == nil end
  return current ~= nil and current == tonumber(pre)
end
