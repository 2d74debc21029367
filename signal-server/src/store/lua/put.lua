-- Puts, shared by the put and put_many functions. KEYS: three per put (as in the prelude).
-- ARGV: eight per put: [1] now, [2] code, [3] slot, [4] data, [5] content type,
-- [6] precondition ('' | '*' | version), [7] blob ttl ms or '', [8] content type as a JSON
-- string literal.
--
-- put_run runs the call's puts number `first` to `last` (0-based), all in one room, in order,
-- each with the outcome it would have alone. A client's burst of writes arrives as such a run,
-- so it is read with one HMGET and written with one HSET per hash and one RPUSH, not four calls
-- per put. Appends two entries per put to `out`: its status, and the change JSON ('ok'), the
-- current version ('precondition') or ''.

-- The run's writes not yet sent to Redis: data hash fields, room hash fields, changes.
local function no_writes()
  return {data = {}, meta = {}, log = {}}
end

-- Sends the pending writes (before anything reads the stored room, and at the end).
local function flush_writes(room, w)
  local n = #w.log
  if n == 0 then return end
  redis.call('HSET', KEYS[2], unpack(w.data))
  log_changes(room, n, unpack(w.log))
  for i = 1, n do announce(w.log[i]) end
  expire_keys(room)
  w.meta[#w.meta + 1] = '_state'
  w.meta[#w.meta + 1] = state(room)
  redis.call('HSET', KEYS[1], unpack(w.meta))
  room.new_keys = nil
end

-- One put on the loaded room, not yet written; `metas` maps slot names to their meta (false:
-- none). Answers status, detail and (when 'ok') the slot's new meta.
local function put_one(room, metas)
  local slot = ARGV[3]
  local meta = metas[slot]
  if meta == nil then
    meta = redis.call('HGET', KEYS[1], 'm:' .. slot) or false
    metas[slot] = meta
  end
  local cur_version = meta and slot_version(meta) or nil
  if not precondition_ok(ARGV[6], cur_version) then
    return 'precondition', tostring(cur_version or '')
  end
  if not cur_version then
    if room.slots >= max_slots then return 'too_many_slots', '' end
    room.slots = room.slots + 1
    -- The room's first slot creates the data hash, which then needs its TTL.
    if room.slots == 1 then room.new_keys = true end
  end
  room.version = room.version + 1
  refresh_deadline(room)
  local size_s = num(string.len(ARGV[4]))
  local expires_s = ''
  if ARGV[7] ~= '' then
    local expires = math.min(now + tonumber(ARGV[7]), room.deadline)
    if not room.next or expires < room.next then room.next = expires end
    expires_s = num(expires)
  end
  local json = change_json(room, 'put', slot, ',"size":' .. size_s .. ',"content_type":' ..
    ARGV[8] .. (expires_s == '' and '' or (',"expires_at":' .. expires_s)))
  meta = num(room.version) .. '|' .. expires_s .. '|' .. size_s .. '|' .. ARGV[5]
  metas[slot] = meta
  return 'ok', json, meta
end

-- Queues the current put's writes in `w`.
local function queue_writes(w, meta, json)
  local data, fields, log = w.data, w.meta, w.log
  data[#data + 1] = ARGV[3]
  data[#data + 1] = ARGV[4]
  fields[#fields + 1] = 'm:' .. ARGV[3]
  fields[#fields + 1] = meta
  log[#log + 1] = json
end

-- Writes a lone put (a run of one) at once: queueing it in the run's tables cost a lone put
-- 6-20% more Redis time in A/B runs.
local function write_lone(room, meta, json)
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
  log_changes(room, 1, json)
  announce(json)
  expire_keys(room)
  redis.call('HSET', KEYS[1], 'm:' .. ARGV[3], meta, '_state', state(room))
  room.new_keys = nil
end

-- Makes put `p` of the call the current one; `room_keys` are its room's.
local function select_put(room_keys, args, p, batch)
  local a = 8 * p
  begin(room_keys, {args[a + 1], args[a + 2], args[a + 3], args[a + 4], args[a + 5], args[a + 6],
               args[a + 7], args[a + 8]}, batch)
end

local function put_run(keys, args, first, last, out, batch)
  local k = 3 * first
  local room_keys = {keys[k + 1], keys[k + 2], keys[k + 3]}
  select_put(room_keys, args, first, batch)
  local stored
  if first == last then
    stored = redis.call('HMGET', KEYS[1], '_state', 'm:' .. ARGV[3])
  else
    local fields = {'_state'}
    for p = first, last do fields[#fields + 1] = 'm:' .. args[8 * p + 3] end
    stored = redis.call('HMGET', KEYS[1], unpack(fields))
  end
  local room = live_room(stored[1])
  local metas = {}
  for p = first, last do
    local slot = args[8 * p + 3]
    if metas[slot] == nil then metas[slot] = stored[p - first + 2] or false end
  end
  -- Pending writes of a longer run; a lone put writes at once.
  local w = first < last and no_writes() or nil
  for p = first, last do
    if p > first then select_put(room_keys, args, p, batch) end
    -- Each put has its own `now`: the room may reach its deadline or a blob expiry mid-run.
    if room and now >= room.deadline then
      if w then flush_writes(room, w) w = no_writes() end
      drop_room()
      room = nil
    end
    local status, detail = 'no_room', ''
    if room then
      if room.next and now >= room.next then
        if w then flush_writes(room, w) w = no_writes() end
        reap(room)
        metas = {}
      end
      local meta
      status, detail, meta = put_one(room, metas)
      if status == 'ok' then
        if w then queue_writes(w, meta, detail) else write_lone(room, meta, detail) end
      end
    end
    out[#out + 1] = status
    out[#out + 1] = detail
  end
  if room and w then flush_writes(room, w) end
end
