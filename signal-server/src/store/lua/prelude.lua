-- Shared by every room script. KEYS: room hash, data hash, log list (one hash tag).
-- Room hash fields: _created, _version, _deadline (ms), _next (earliest blob expiry, may be early),
-- _slots (count), _kexp (the keys' PEXPIREAT), and per slot m:<slot> = "version|expires|size|ctype".
-- ARGV: now_ms, code, channel, idle_ms, max_age_ms, log_len, then the script's own.
-- Written for speed: few redis.calls per write, change JSON built by concatenation.
local now = tonumber(ARGV[1])
local code = ARGV[2]
local channel = ARGV[3]
local idle = tonumber(ARGV[4])
local max_age = tonumber(ARGV[5])
local log_len = tonumber(ARGV[6])

local function drop_room()
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
end

-- The live room as {created, version, deadline, next, slots, slot_meta}, or nil (its keys dropped
-- once past the deadline). `slot` (optional) also fetches that slot's meta.
local function load_room(slot)
  local m
  if slot then
    m = redis.call('HMGET', KEYS[1], '_created', '_version', '_deadline', '_next', '_slots', '_kexp',
                   'm:' .. slot)
  else
    m = redis.call('HMGET', KEYS[1], '_created', '_version', '_deadline', '_next', '_slots', '_kexp')
  end
  if not m[1] then return nil end
  local room = {created = tonumber(m[1]), version = tonumber(m[2]), deadline = tonumber(m[3]),
                next = tonumber(m[4]), slots = tonumber(m[5]) or 0, kexp = tonumber(m[6]),
                slot_meta = m[7]}
  if now >= room.deadline then drop_room() return nil end
  return room
end

local function parse_slot(s)
  local v, e, size, ctype = string.match(s, '^(%d+)|(%d*)|(%d+)|(.*)$')
  return tonumber(v), tonumber(e), tonumber(size), ctype
end

local function num(n)
  return string.format('%d', n)
end

-- A JSON string literal; the fast path covers every name our grammar allows.
local function str(s)
  if string.find(s, '[%c"\\\128-\255]') then return cjson.encode(s) end
  return '"' .. s .. '"'
end

-- The change as JSON (the shape of model::Change), appended to the bounded log and published.
local function emit(room, op, slot, extra)
  local json = '{"version":' .. num(room.version) .. ',"room":' .. str(code) .. ',"op":"' .. op ..
    '","at":' .. num(now) .. ',"room_expires_at":' .. num(room.deadline)
  if slot then json = json .. ',"slot":' .. str(slot) end
  if extra then json = json .. extra end
  json = json .. '}'
  local len = redis.call('RPUSH', KEYS[3], json)
  if len == 1 then room.new_keys = true end
  if len > log_len then redis.call('LTRIM', KEYS[3], -log_len, -1) end
  redis.call('PUBLISH', channel, json)
  return json
end

-- Removes blobs past their own TTL (only when the earliest one is due), logging each.
local function reap(room)
  if not room.next or now < room.next then return end
  local all = redis.call('HGETALL', KEYS[1])
  local next_expiry = nil
  for i = 1, #all, 2 do
    local field = all[i]
    if string.sub(field, 1, 2) == 'm:' then
      local _, e = parse_slot(all[i + 1])
      local slot = string.sub(field, 3)
      if e and now >= e then
        redis.call('HDEL', KEYS[1], field)
        redis.call('HDEL', KEYS[2], slot)
        room.version = room.version + 1
        room.slots = room.slots - 1
        emit(room, 'expire', slot)
      elseif e and (not next_expiry or e < next_expiry) then
        next_expiry = e
      end
    end
  end
  room.next = next_expiry
  redis.call('HSET', KEYS[1], '_version', room.version, '_slots', room.slots)
  if next_expiry then redis.call('HSET', KEYS[1], '_next', next_expiry)
  else redis.call('HDEL', KEYS[1], '_next') end
end

-- After a client write: the idle deadline moves (capped by max age).
local function refresh_deadline(room)
  room.deadline = math.min(now + idle, room.created + max_age)
end

-- Keys outlive the logical deadline by up to KEY_SLACK, so a busy room pays three PEXPIREATs once
-- a minute instead of on every write. Expiry stays exact: load_room drops a room past _deadline.
-- Call last (keys made by this script need their TTL); returns whether _kexp must be stored.
local KEY_SLACK = 60000
local function expire_keys(room)
  if room.new_keys or not room.kexp or room.kexp < room.deadline then
    room.kexp = math.min(room.deadline + KEY_SLACK, room.created + max_age + KEY_SLACK)
    for i = 1, 3 do redis.call('PEXPIREAT', KEYS[i], room.kexp) end
    return true
  end
  return false
end

local function precondition_ok(pre, current)
  if pre == '' then return true end
  if pre == '*' then return current == nil end
  return current ~= nil and current == tonumber(pre)
end
