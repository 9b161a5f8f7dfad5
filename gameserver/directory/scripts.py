"""The Redis directory's Lua scripts. Each runs atomically on the Redis server; times come
from the server's own clock (TIME) or are relative (PEXPIRE), so nodes' clocks never meet.

Keys (``P`` is the key prefix, ``gs:`` by default):

- ``P gen``: the data generation, a random token set by the first script that finds it missing
  (so it changes when Redis lost its data). No TTL.
- ``P epoch``: the epoch counter (INCR), shared by all rooms, so epochs never repeat within a
  generation. No TTL.
- ``P room:<name>``: hash node, epoch, gen, url, game, private[, from]: the lease; PEXPIRE
  lease TTL, renewed by the owner.
- ``P last:<name>``: ``gen:epoch`` of the room's latest lease; PEXPIRE epoch memory.
- ``P seat:<player>``: hash room, node, epoch; PEXPIRE lease TTL, renewed with the room.
- ``P rate:<player>``: hash tokens, stamp (ms): the creation token bucket; PEXPIRE until full.
- ``P node:<id>``: hash url, load; ``P nodes:load`` (zset id -> load) and ``P nodes:exp``
  (zset id -> expiry, server ms). Pruned by every node script; sized by live nodes only.
"""

from __future__ import annotations

from gameserver.directory.redis_client import Script

_GEN = """
local function generation(key, fresh)
  local gen = redis.call('GET', key)
  if not gen then
    redis.call('SET', key, fresh)
    gen = fresh
  end
  return gen
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# KEYS: room, last, rate, gen, epoch, placing:<room>
# ARGV: node, url, game, private, ttl_ms, fresh_gen, rate, burst, memory_ms
# (a room created is no longer being placed: placing:<room> goes; its placement still counts)
CREATE = Script(
    _GEN
    + """
local gen = generation(KEYS[4], ARGV[6])
local cur = redis.call('HMGET', KEYS[1], 'node', 'epoch', 'gen', 'url', 'game', 'private')
if cur[1] then
  return {'taken', cur[1], cur[2], cur[3], cur[4], cur[5], cur[6], redis.call('PTTL', KEYS[1])}
end
local now = now_ms()
local rate = tonumber(ARGV[7])
local burst = tonumber(ARGV[8])
local b = redis.call('HMGET', KEYS[3], 'tokens', 'stamp')
local tokens = tonumber(b[1]) or burst
local stamp = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - stamp) / 1000 * rate)
if tokens < 1 then
  return {'rate'}
end
tokens = tokens - 1
redis.call('HSET', KEYS[3], 'tokens', tostring(tokens), 'stamp', tostring(now))
local full_ms = 86400000
if rate > 0 then full_ms = math.ceil((burst - tokens) / rate * 1000) end
redis.call('PEXPIRE', KEYS[3], math.max(1, full_ms))
local epoch = redis.call('INCR', KEYS[5])
redis.call('HSET', KEYS[1], 'node', ARGV[1], 'epoch', epoch, 'gen', gen, 'url', ARGV[2],
           'game', ARGV[3], 'private', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('SET', KEYS[2], gen .. ':' .. epoch, 'PX', ARGV[9])
redis.call('DEL', KEYS[6])
return {'ok', epoch, gen}
"""
)

# KEYS: room
LOOKUP = Script(
    """
local cur = redis.call('HMGET', KEYS[1], 'node', 'epoch', 'gen', 'url', 'game', 'private')
if not cur[1] then return false end
return {cur[1], cur[2], cur[3], cur[4], cur[5], cur[6], redis.call('PTTL', KEYS[1])}
"""
)

# KEYS: gen, epoch, then (room, last) per lease, then one seat key per seat
# ARGV: node, ttl_ms, fresh_gen, memory_ms, n_leases, n_seats,
#       then (epoch, gen, url, game, private) per lease, then (lease index, epoch) per seat,
#       then the room name of each seat
# Returns {lease results, seat results}: a lease result is {'kept', epoch, gen} or
# {'moved', node, epoch, gen, url, game, private, pttl} or {'lapsed'}; a seat result is
# the seat's new epoch, or 0 (lost).
RENEW = Script(
    _GEN
    + """
local gen = generation(KEYS[1], ARGV[3])
local node, ttl, memory = ARGV[1], ARGV[2], ARGV[4]
local n_leases, n_seats = tonumber(ARGV[5]), tonumber(ARGV[6])
local out, renewed = {}, {}
local function hold(room_key, last_key, epoch, url, game, private, from)
  redis.call('HSET', room_key, 'node', node, 'epoch', epoch, 'gen', gen, 'url', url,
             'game', game, 'private', private)
  if from then redis.call('HSET', room_key, 'from', from) end
  redis.call('PEXPIRE', room_key, ttl)
  redis.call('SET', last_key, gen .. ':' .. epoch, 'PX', memory)
end
for i = 1, n_leases do
  local room_key, last_key = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
  local a = 6 + (i - 1) * 5
  local epoch, lgen, url, game, private = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
  local cur = redis.call('HMGET', room_key, 'node', 'epoch', 'gen', 'url', 'game', 'private', 'from')
  local result
  if cur[1] then
    if cur[1] == node and cur[2] == epoch and cur[3] == lgen then
      redis.call('PEXPIRE', room_key, ttl)
      redis.call('PEXPIRE', last_key, memory)
      result = {'kept', epoch, lgen}
    elseif lgen ~= gen and cur[7] and cur[3] == gen then
      -- both claim it after a data loss: the later lease of the old generation wins
      local fgen, fepoch = string.match(cur[7], '^(.*):(%d+)$')
      if fgen == lgen and tonumber(epoch) > tonumber(fepoch) then
        local new = redis.call('INCR', KEYS[2])
        hold(room_key, last_key, new, url, game, private, lgen .. ':' .. epoch)
        result = {'kept', tostring(new), gen}
      end
    end
    if not result then
      result = {'moved', cur[1], cur[2], cur[3], cur[4], cur[5], cur[6], redis.call('PTTL', room_key)}
    end
  elseif lgen == gen then
    if redis.call('GET', last_key) == lgen .. ':' .. epoch then
      -- it lapsed (its owner was paused or cut off) and nobody created it since
      hold(room_key, last_key, epoch, url, game, private, false)
      result = {'kept', epoch, gen}
    else
      result = {'lapsed'}
    end
  else
    -- the store lost its data since this lease was granted: claim it under the new generation
    local new = redis.call('INCR', KEYS[2])
    hold(room_key, last_key, new, url, game, private, lgen .. ':' .. epoch)
    result = {'kept', tostring(new), gen}
  end
  if result[1] == 'kept' then renewed[i] = {epoch, result[2]} end
  out[i] = result
end
local seats = {}
local s0 = 6 + n_leases * 5
for j = 1, n_seats do
  local seat_key = KEYS[2 + 2 * n_leases + j]
  local i, epoch = tonumber(ARGV[s0 + 2 * j - 1]), ARGV[s0 + 2 * j]
  local r = renewed[i]
  local result = 0
  if r and r[1] == epoch then
    local room = ARGV[6 + n_leases * 5 + 2 * n_seats + j]
    local cur = redis.call('HMGET', seat_key, 'room', 'node', 'epoch')
    if (not cur[1]) or (cur[1] == room and cur[2] == node and cur[3] == epoch) then
      redis.call('HSET', seat_key, 'room', room, 'node', node, 'epoch', r[2])
      redis.call('PEXPIRE', seat_key, ttl)
      result = tonumber(r[2])
    end
  end
  seats[j] = result
end
return {out, seats}
"""
)

# KEYS: room, last. ARGV: node, epoch, gen. Returns 1 if the lease held the room (now gone).
RELEASE = Script(
    """
local cur = redis.call('HMGET', KEYS[1], 'node', 'epoch', 'gen')
if cur[1] == ARGV[1] and cur[2] == ARGV[2] and cur[3] == ARGV[3] then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0
"""
)

# KEYS: room, seat. ARGV: node, epoch, gen, player, room name, seat prefix room key prefix,
#       replace room, replace node, replace epoch ('' when no replace)
# Returns {'ok', epoch, pttl} or {'taken', room, node, epoch, pttl} or {'notowner'}.
CLAIM_SEAT = Script(
    """
local cur = redis.call('HMGET', KEYS[1], 'node', 'epoch', 'gen')
if not (cur[1] == ARGV[1] and cur[2] == ARGV[2] and cur[3] == ARGV[3]) then
  return {'notowner'}
end
local held = redis.call('HMGET', KEYS[2], 'room', 'node', 'epoch')
if held[1] and held[1] ~= ARGV[5] and
   not (held[1] == ARGV[7] and held[2] == ARGV[8] and held[3] == ARGV[9]) then
  local other = redis.call('HGET', ARGV[6] .. held[1], 'epoch')
  if other == held[3] then
    return {'taken', held[1], held[2], held[3], redis.call('PTTL', KEYS[2])}
  end
end
local pttl = redis.call('PTTL', KEYS[1])
redis.call('HSET', KEYS[2], 'room', ARGV[5], 'node', ARGV[1], 'epoch', ARGV[2])
redis.call('PEXPIRE', KEYS[2], math.max(1, pttl))
return {'ok', pttl}
"""
)

# KEYS: seat. Returns {room, node, epoch, pttl} or false.
SEAT_OF = Script(
    """
local held = redis.call('HMGET', KEYS[1], 'room', 'node', 'epoch')
if not held[1] then return false end
return {held[1], held[2], held[3], redis.call('PTTL', KEYS[1])}
"""
)

# KEYS: seat. ARGV: room, node, epoch. Returns 1 if it was that seat (now freed).
RELEASE_SEAT = Script(
    """
local held = redis.call('HMGET', KEYS[1], 'room', 'node', 'epoch')
if held[1] == ARGV[1] and held[2] == ARGV[2] and held[3] == ARGV[3] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""
)

_PRUNE = """
local function prune(load_key, exp_key, node_prefix)
  local now = redis.call('TIME')
  local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  local dead = redis.call('ZRANGEBYSCORE', exp_key, '-inf', ms)
  for _, id in ipairs(dead) do
    redis.call('ZREM', load_key, id)
    redis.call('ZREM', exp_key, id)
    redis.call('DEL', node_prefix .. id)
  end
  return ms
end
"""

# KEYS: node, nodes:load, nodes:exp. ARGV: id, url, load, ttl_ms, node prefix
HEARTBEAT = Script(
    _PRUNE
    + """
local ms = prune(KEYS[2], KEYS[3], ARGV[5])
redis.call('HSET', KEYS[1], 'url', ARGV[2], 'load', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[3], ms + tonumber(ARGV[4]), ARGV[1])
return 1
"""
)

# KEYS: node, nodes:load, nodes:exp. ARGV: id
REMOVE_NODE = Script(
    """
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""
)

# KEYS: nodes:load, nodes:exp, placing:<room>. ARGV: node prefix, pick (1: place the room),
# placement hold (ms), most placements kept a node, placed prefix, room.
# A node's load is the one it reported plus the rooms placed on it that have not run out
# (placed:<id>, a ZSET of room -> expiry): a heartbeat does not undo them. Returns
# {id, url, load, ...} least loaded first, ties by id. With pick, only the room's node: the one
# an earlier placement of the room chose (placing:<room>) while that node lives, else the
# first, on which the room's placement is then counted.
NODES = Script(
    _PRUNE
    + """
local ms = prune(KEYS[1], KEYS[2], ARGV[1])
local ranked = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local nodes = {}
for i = 1, #ranked, 2 do
  local placed = ARGV[5] .. ranked[i]
  redis.call('ZREMRANGEBYSCORE', placed, '-inf', ms)
  table.insert(nodes, {ranked[i], tonumber(ranked[i + 1]) + redis.call('ZCARD', placed)})
end
table.sort(nodes, function(x, y)
  if x[2] ~= y[2] then return x[2] < y[2] end
  return x[1] < y[1]
end)
local function entry(node)
  local url = redis.call('HGET', ARGV[1] .. node[1], 'url') or ''
  return {node[1], url, string.format('%.17g', node[2])}
end
if ARGV[2] ~= '1' then
  local out = {}
  for _, node in ipairs(nodes) do
    for _, x in ipairs(entry(node)) do table.insert(out, x) end
  end
  return out
end
if #nodes == 0 then return {} end
local earlier = redis.call('GET', KEYS[3])
if earlier then
  for _, node in ipairs(nodes) do
    if node[1] == earlier then return entry(node) end
  end
  redis.call('ZREM', ARGV[5] .. earlier, ARGV[6])
end
local chosen = nodes[1]
local placed = ARGV[5] .. chosen[1]
local hold = tonumber(ARGV[3])
redis.call('ZADD', placed, ms + hold, ARGV[6])
redis.call('PEXPIRE', placed, hold)
redis.call('SET', KEYS[3], chosen[1], 'PX', hold)
local extra = redis.call('ZCARD', placed) - tonumber(ARGV[4])
if extra > 0 then redis.call('ZPOPMIN', placed, extra) end
return entry(chosen)
"""
)
