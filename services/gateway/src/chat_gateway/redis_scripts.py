"""Lua scripts run atomically in Redis: presence transitions and token buckets.

Each script is one round trip and decides a transition that several gateways may race
on (two devices of one user connecting through different gateways at once).
"""

from __future__ import annotations

#: KEYS: conns zset, grace key, this gateway's user set, pending zset, manual status key.
#: ARGV: node id, lease (ms), user id.
#: Adds this gateway's lease; returns the status to announce (the manual status, or
#: "online") when the user was neither online nor in the offline grace period, else
#: false (a reconnect within the grace cancels the pending offline announcement: nothing
#: is announced either way). One round trip for the lease and the status.
CONNECT = """
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
local before = redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
redis.call('SADD', KEYS[3], ARGV[3])
local resumed = redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[4], ARGV[3])
if before == 0 and resumed == 0 then return redis.call('GET', KEYS[5]) or 'online' end
return false
"""

#: KEYS: conns zset, grace key, this gateway's user set, pending zset.
#: ARGV: node id, user id, grace (ms), grace marker ttl (ms).
#: Drops this gateway's lease; when no socket of the user is left anywhere, starts the
#: grace: the marker holds this moment (the last seen) and the pending entry the end of
#: the grace, when the users service's sweep announces offline. Returns 1 then, else 0.
DISCONNECT = """
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
redis.call('SREM', KEYS[3], ARGV[2])
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('SET', KEYS[2], now_ms, 'PX', tonumber(ARGV[4]))
  redis.call('ZADD', KEYS[4], now_ms + tonumber(ARGV[3]), ARGV[2])
  return 1
end
return 0
"""

#: KEYS: bucket hash. ARGV: refill rate (tokens per ms), burst, tokens wanted (a lease;
#: 1 when absent).
#: Takes up to ARGV[3] whole tokens at once: returns {granted, 0} with granted ≥ 1, or
#: {0, ms until one token is available}. A gateway spends a granted block locally
#: (`ratelimit.RateLimiter`), so a busy user costs one round trip per block, not per event.
TOKEN_BUCKET = """
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3]) or 1
local state = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then tokens = burst; ts = now_ms end
tokens = math.min(burst, tokens + (now_ms - ts) * rate)
local granted = 0
local wait = 0
if tokens >= 1 then
  granted = math.min(want, math.floor(tokens))
  tokens = tokens - granted
else
  wait = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', now_ms)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)
return {granted, wait}
"""

#: KEYS: gateway heartbeats zset, this gateway's user set, pending zset.
#: ARGV: node id, grace (ms), grace marker ttl (ms), then the user ids with a socket
#: here now. At start: a predecessor with the same node id that died (SIGKILL, then a
#: restart within the heartbeat TTL, before any sweep saw it dead) left its users in the
#: set and their leases under this id; they get the offline grace like any dead
#: gateway's users (last seen: its last heartbeat). Returns how many were released.
RELEASE_PREDECESSOR = """
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
local beat = redis.call('ZSCORE', KEYS[1], ARGV[1]) or now_ms
local here = {}
for i = 4, #ARGV do here[ARGV[i]] = true end
local released = 0
for _, user in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if not here[user] then
    local conns = 'pr:c:' .. user
    redis.call('ZREM', conns, ARGV[1])
    redis.call('ZREMRANGEBYSCORE', conns, '-inf', now_ms)
    redis.call('SREM', KEYS[2], user)
    local marker = 'pr:g:' .. user
    if redis.call('ZCARD', conns) == 0 and redis.call('EXISTS', marker) == 0 then
      redis.call('SET', marker, beat, 'PX', tonumber(ARGV[3]))
      redis.call('ZADD', KEYS[3], now_ms + tonumber(ARGV[2]), user)
    end
    released = released + 1
  end
end
redis.call('ZADD', KEYS[1], now_ms, ARGV[1])
return released
"""
