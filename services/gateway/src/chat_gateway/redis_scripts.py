"""Lua scripts run atomically in Redis: presence transitions and token buckets.

Each script is one round trip and decides a transition that several gateways may race
on (two devices of one user connecting through different gateways at once).
"""

from __future__ import annotations

#: KEYS: conns zset, grace key. ARGV: node id, lease expiry (ms).
#: Adds this gateway's lease; returns 1 when the user was neither online nor in the
#: offline grace period (so "online" must be announced), else 0.
CONNECT = """
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
local before = redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
local resumed = redis.call('DEL', KEYS[2])
if before == 0 and resumed == 0 then return 1 end
return 0
"""

#: KEYS: conns zset, grace key. ARGV: node id, grace token, grace (ms).
#: Drops this gateway's lease; returns 1 when no socket of the user is left anywhere
#: (the caller then waits out the grace period and calls EXPIRE with the same token).
DISCONNECT = """
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', tonumber(ARGV[3]) * 3)
  return 1
end
return 0
"""

#: KEYS: conns zset, grace key. ARGV: grace token.
#: Returns 1 when the grace period ended with no reconnect (announce "offline").
EXPIRE = """
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZCARD', KEYS[1]) > 0 then return 0 end
return 1
"""

#: KEYS: bucket hash. ARGV: refill rate (tokens per ms), burst.
#: Returns {1, 0} when a token was taken, else {0, ms until one is available}.
TOKEN_BUCKET = """
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then tokens = burst; ts = now_ms end
tokens = math.min(burst, tokens + (now_ms - ts) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', now_ms)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)
return {allowed, wait}
"""
