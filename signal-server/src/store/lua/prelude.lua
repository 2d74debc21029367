-- The top of the Redis Functions library. redis.rs assembles the library from this prelude and
-- one registered function per operation (each other file here is a function body, except
-- put.lua: it becomes the helper put_blob(), which put and put_many call), loads it
-- once per Redis node, and calls the functions with FCALL. The helpers below are built at load
-- time, not on every call. (Top-level code must not touch `string`, `math`, ...: Redis only
-- exposes them once the library is loaded.)
--
-- KEYS: room hash, data hash, log list (one hash tag).
-- Room hash fields: _state = "created|version|deadline|next|slots|kexp" (unix ms, `next` the
-- earliest blob expiry, may be early or empty; `kexp` the keys' PEXPIREAT), and per slot
-- m:<slot> = "version|expires|size|ctype".
-- ARGV: now_ms, code, then the operation's own. `code` and slot names are JSON-safe by their
-- grammar (model.rs), so they are quoted without escaping.
-- The deployment's settings are constants of the library: redis.rs prepends
--   local channel, idle, max_age, log_len, max_slots = <events channel>, <idle ms>, ...
-- (so the library's name, a hash of its source, differs between settings).
-- Written for speed: few arguments, few redis.calls and few fields per write, change JSON built
-- by concatenation.

-- The current call's context, set by begin() at the start of every function (Redis runs one
-- function at a time, so upvalues are safe; library globals are read-only anyway).
local KEYS, ARGV, now, code
-- put_many's changes waiting to go out as one message; nil: emit() publishes at once.
local unpublished

local function begin(keys, args, batch)
  KEYS = keys
  ARGV = args
  now = tonumber(args[1])
  code = args[2]
  unpublished = batch
end

-- Publishes put_many's changes as one message, one change JSON per line (the JSON holds no raw
-- newline): subscribers then read one message per call, not one per put.
local function publish_batch(batch)
  if #batch > 0 then redis.call('PUBLISH', channel, table.concat(batch, '\n')) end
end

local function drop_room()
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
end

-- The live room held in a _state field value (nil: none), as {created, version, deadline,
-- next, slots, kexp}; a room past its deadline has its keys dropped and is nil.
local function live_room(state_text)
  if not state_text then return nil end
  local created, version, deadline, next, slots, kexp =
    string.match(state_text, '^(%d+)|(%d+)|(%d+)|(%d*)|(%d+)|(%d+)$')
  local room = {created = tonumber(created), version = tonumber(version),
                deadline = tonumber(deadline), next = tonumber(next), slots = tonumber(slots),
                kexp = tonumber(kexp)}
  if now >= room.deadline then drop_room() return nil end
  return room
end

-- The live room (see live_room), or nil. `slot` (optional) also fetches that slot's meta, into
-- room.slot_meta.
local function load_room(slot)
  local m
  if slot then
    m = redis.call('HMGET', KEYS[1], '_state', 'm:' .. slot)
  else
    m = redis.call('HMGET', KEYS[1], '_state')
  end
  local room = live_room(m[1])
  if room then room.slot_meta = m[2] end
  return room
end

-- The room's _state field value.
local function state(room)
  return string.format('%d|%d|%d|%s|%d|%d', room.created, room.version, room.deadline,
                       room.next and string.format('%d', room.next) or '', room.slots, room.kexp)
end

-- The version, and the expiry (nil for none), of a slot's meta "version|expires|size|ctype".
local function slot_version(meta)
  return tonumber(string.match(meta, '^%d+'))
end

local function slot_expiry(meta)
  return tonumber(string.match(meta, '^%d+|(%d*)|'))
end

local function num(n)
  return string.format('%d', n)
end

-- The change as JSON (the shape of model::Change).
local function change_json(room, op, slot, extra)
  return '{"version":' .. num(room.version) .. ',"room":"' .. code .. '","op":"' .. op ..
    '","at":' .. ARGV[1] .. ',"room_expires_at":' .. num(room.deadline) ..
    (slot and (',"slot":"' .. slot .. '"') or '') .. (extra or '') .. '}'
end

-- Appends the n changes given after `n` to the log. The log holds at least the last log_len
-- changes and is trimmed back to log_len once it reaches twice that (one LTRIM per log_len
-- writes); info.lua never serves more than log_len of them.
local function log_changes(room, n, ...)
  local len = redis.call('RPUSH', KEYS[3], ...)
  if len == n then room.new_keys = true end
  if len >= 2 * log_len then redis.call('LTRIM', KEYS[3], -log_len, -1) end
end

-- Publishes a logged change, at once or (within put_many) later with the rest of its batch.
local function announce(json)
  if unpublished then
    unpublished[#unpublished + 1] = json
  else
    redis.call('PUBLISH', channel, json)
  end
end

-- Logs and publishes one change; returns its JSON.
local function emit(room, op, slot, extra)
  local json = change_json(room, op, slot, extra)
  log_changes(room, 1, json)
  announce(json)
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
      local e = slot_expiry(all[i + 1])
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
  redis.call('HSET', KEYS[1], '_state', state(room))
end

-- After a client write: the idle deadline moves (capped by max age).
local function refresh_deadline(room)
  room.deadline = math.min(now + idle, room.created + max_age)
end

-- Keys outlive the logical deadline by up to KEY_SLACK, so a busy room pays three PEXPIREATs once
-- a minute instead of on every write. Expiry stays exact: load_room drops a room past its
-- deadline. Call after the writes that may create keys (they need their TTL), before storing
-- _state (it holds kexp).
local KEY_SLACK = 60000
local function expire_keys(room)
  if room.new_keys or not room.kexp or room.kexp < room.deadline then
    room.kexp = math.min(room.deadline + KEY_SLACK, room.created + max_age + KEY_SLACK)
    for i = 1, 3 do redis.call('PEXPIREAT', KEYS[i], room.kexp) end
  end
end

local function precondition_ok(pre, current)
  if pre == '' then return true end
  if pre == '*' then return current == nil end
  return current ~= nil and current == tonumber(pre)
end
