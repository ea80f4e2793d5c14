"""The Lua scripts of the Redis queue: every change to a lane is one atomic script.

Keys (``P`` is the configured prefix inside a hash tag, so every key hashes to one cluster slot):

- ``P:lane:L:rot``     sorted set, the rotation of lane ``L``: one member per user with waiting jobs
  (``""`` for every job of a FIFO lane), scored by a counter, the next user first;
- ``P:lane:L:q:U``     list, user ``U``'s waiting entries in arrival order (entry = ``id who``);
- ``P:lane:L:meta``    hash: ``size`` (waiting), ``seq`` (back-of-rotation counter), ``front`` (front counter);
- ``P:lane:L:leases``  sorted set, claimed job ids scored by lease deadline (ms, Redis clock);
- ``P:lane:L:wake``    list of at most one token: idle takers block on it with BLPOP;
- ``P:job:ID``         hash: ``data`` (the job as JSON), ``lane``, ``rkey`` (rotation key), ``entry``,
  ``state`` (``waiting`` | ``leased``), ``owner`` (the consumer holding the lease), ``claims``;
- ``P:changes``        pub/sub channel: the name of a lane whose waiting order changed.

The rotation mirrors ``FairLane``: a pop serves the first user and moves it to the back; a user
whose list empties leaves the rotation; a job handed back (lease expired, taker cancelled) goes to
the front of its user's list and the user to the front of the rotation. Deadlines use Redis' own
clock (``TIME``), so the machines' clocks never matter. Scripts touch keys they derive from
``KEYS[1]``; all share one hash tag, so they stay in one slot.
"""

from __future__ import annotations

_COMMON = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function push(base, rkey, entry, front)
  local meta, rot, q = base .. ':meta', base .. ':rot', base .. ':q:' .. rkey
  if front then
    redis.call('LPUSH', q, entry)
    redis.call('ZADD', rot, redis.call('HINCRBY', meta, 'front', -1), rkey)
  else
    redis.call('RPUSH', q, entry)
    if not redis.call('ZSCORE', rot, rkey) then
      redis.call('ZADD', rot, redis.call('HINCRBY', meta, 'seq', 1), rkey)
    end
  end
  return redis.call('HINCRBY', meta, 'size', 1)
end

local function pop(base)
  local meta, rot = base .. ':meta', base .. ':rot'
  local first = redis.call('ZRANGE', rot, 0, 0)[1]
  if not first then return nil end
  local q = base .. ':q:' .. first
  local entry = redis.call('LPOP', q)
  if redis.call('LLEN', q) == 0 then
    redis.call('ZREM', rot, first)
  else
    redis.call('ZADD', rot, redis.call('HINCRBY', meta, 'seq', 1), first)
  end
  redis.call('HINCRBY', meta, 'size', -1)
  return entry
end

local function size(base)
  return tonumber(redis.call('HGET', base .. ':meta', 'size') or '0')
end

-- Wake at most one idle taker; a taker that claims passes the baton on while work remains.
local function wake(base)
  local key = base .. ':wake'
  redis.call('RPUSH', key, '1')
  redis.call('LTRIM', key, -1, -1)
end

local function give_back(base, jobs, id)
  local job = jobs .. id
  local f = redis.call('HMGET', job, 'rkey', 'entry')
  redis.call('ZREM', base .. ':leases', id)
  if not f[1] then return end
  redis.call('HSET', job, 'state', 'waiting', 'owner', '')
  push(base, f[1], f[2], true)
end
"""

# KEYS[1] lane base, KEYS[2] job key, KEYS[3] changes channel
# ARGV: id, lane, rkey, entry, data, capacity, force, consumer
# -> {status, size}: 1 queued, 0 already queued or held elsewhere, -1 lane full
PUT = _COMMON + """
local base, job = KEYS[1], KEYS[2]
local state, owner = unpack(redis.call('HMGET', job, 'state', 'owner'))
if state == 'waiting' or (state == 'leased' and owner ~= ARGV[8]) then
  return {0, size(base)}
end
if ARGV[7] == '0' and size(base) >= tonumber(ARGV[6]) then return {-1, size(base)} end
if state == 'leased' then redis.call('ZREM', base .. ':leases', ARGV[1]) end
redis.call('HSET', job, 'data', ARGV[5], 'lane', ARGV[2], 'rkey', ARGV[3], 'entry', ARGV[4],
           'state', 'waiting', 'owner', '')
local n = push(base, ARGV[3], ARGV[4], false)
wake(base)
redis.call('PUBLISH', KEYS[3], ARGV[2])
return {1, n}
"""

# KEYS[1] lane base, KEYS[2] changes channel
# ARGV: lane, jobs prefix, consumer, lease ms, limit (0: none)
# -> {id, data, claims, size} when claimed, else {'', ms until the next lease deadline or -1, size}
CLAIM = _COMMON + """
local base, jobs, leases = KEYS[1], ARGV[2], KEYS[1] .. ':leases'
local now, limit = now_ms(), tonumber(ARGV[5])
local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', now)
for i = #expired, 1, -1 do give_back(base, jobs, expired[i]) end
local changed = #expired > 0
local running = redis.call('ZCARD', leases)
local entry = nil
if limit <= 0 or running < limit then entry = pop(base) end
if not entry then
  if changed then redis.call('PUBLISH', KEYS[2], ARGV[1]) end
  local next = redis.call('ZRANGE', leases, 0, 0, 'WITHSCORES')[2]
  local wait = -1
  if next then wait = math.max(tonumber(next) - now, 1) end
  return {'', wait, size(base)}
end
local id = string.sub(entry, 1, string.find(entry, ' ', 1, true) - 1)
local job = jobs .. id
redis.call('HSET', job, 'state', 'leased', 'owner', ARGV[3])
local claims = redis.call('HINCRBY', job, 'claims', 1)
redis.call('ZADD', leases, now + tonumber(ARGV[4]), id)
local left = size(base)
if left > 0 and (limit <= 0 or running + 1 < limit) then wake(base) end
redis.call('PUBLISH', KEYS[2], ARGV[1])
return {id, redis.call('HGET', job, 'data'), claims, left}
"""

# KEYS[1] lane base, KEYS[2] job key; ARGV: id, consumer -> 1 released, 0 not held by this consumer
RELEASE = _COMMON + """
local base, job = KEYS[1], KEYS[2]
local state, owner = unpack(redis.call('HMGET', job, 'state', 'owner'))
if state ~= 'leased' or owner ~= ARGV[2] then return 0 end
redis.call('ZREM', base .. ':leases', ARGV[1])
redis.call('DEL', job)
if size(base) > 0 then wake(base) end
return 1
"""

# KEYS[1] lane base, KEYS[2] changes channel; ARGV: lane, jobs prefix, consumer, id
# -> 1 handed back to the front, 0 not held by this consumer
GIVE_BACK = _COMMON + """
local base, jobs = KEYS[1], ARGV[2]
local state, owner = unpack(redis.call('HMGET', jobs .. ARGV[4], 'state', 'owner'))
if state ~= 'leased' or owner ~= ARGV[3] then return 0 end
give_back(base, jobs, ARGV[4])
wake(base)
redis.call('PUBLISH', KEYS[2], ARGV[1])
return 1
"""

# KEYS[1] lane base; ARGV: jobs prefix, consumer, lease ms, id... -> ids no longer held (lease lost)
EXTEND = _COMMON + """
local leases, deadline, lost = KEYS[1] .. ':leases', now_ms() + tonumber(ARGV[3]), {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local state, owner = unpack(redis.call('HMGET', ARGV[1] .. id, 'state', 'owner'))
  if state == 'leased' and owner == ARGV[2] then
    redis.call('ZADD', leases, 'XX', deadline, id)
  else
    lost[#lost + 1] = id
  end
end
return lost
"""

# KEYS[1] job key, KEYS[2] changes channel; ARGV: id, lanes prefix -> the job's data, or nil if not waiting
REMOVE = _COMMON + """
local state, lane, rkey, entry, data = unpack(redis.call('HMGET', KEYS[1], 'state', 'lane', 'rkey', 'entry', 'data'))
if state ~= 'waiting' then return false end
local base = ARGV[2] .. lane
local q = base .. ':q:' .. rkey
redis.call('LREM', q, 1, entry)
if redis.call('LLEN', q) == 0 then redis.call('ZREM', base .. ':rot', rkey) end
redis.call('HINCRBY', base .. ':meta', 'size', -1)
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', KEYS[2], lane)
return data
"""

# KEYS[1] lane base -> {size, running, entries in the order they will run}
# Round r serves every user's r-th entry, users in rotation order; exhausted users drop out, so
# the cost is O(waiting) however uneven the users' lists are.
VIEW = _COMMON + """
local base = KEYS[1]
local lists = {}
for _, rkey in ipairs(redis.call('ZRANGE', base .. ':rot', 0, -1)) do
  lists[#lists + 1] = redis.call('LRANGE', base .. ':q:' .. rkey, 0, -1)
end
local out, round = {}, 1
while #lists > 0 do
  local still = {}
  for _, list in ipairs(lists) do
    out[#out + 1] = list[round]
    if list[round + 1] then still[#still + 1] = list end
  end
  lists, round = still, round + 1
end
return {size(base), redis.call('ZCARD', base .. ':leases'), out}
"""

SOURCES = {"PUT": PUT, "CLAIM": CLAIM, "RELEASE": RELEASE, "GIVE_BACK": GIVE_BACK, "EXTEND": EXTEND,
           "REMOVE": REMOVE, "VIEW": VIEW}
