"""Background sweeps of the users service: expired custom statuses, offline announcements.

Both are safe on several replicas: a status is cleared by a conditional delete and only
the replica whose delete succeeded announces it; presence transitions are Lua scripts
that hand each due user to exactly one caller.

- **Status expiry**: statuses whose stored `expires_at` passed are cleared and announced
  with `status: ""`. The expiry lives in the store, not in a timer, so it survives any
  restart: a status that expired while every users worker was down is cleared by the
  first sweep after start.
- **Offline**: a gateway whose user's last socket left writes a grace marker and a
  `pr:pending` entry (see `chat_runtime.presence`); when the grace ends with no
  reconnect, the sweep announces offline. A gateway that dies (SIGKILL, lost node)
  stops heartbeating; once its heartbeat is older than `heartbeat_ttl_ms`, the sweep
  drops its leases and gives each of its users the same grace, with the gateway's last
  heartbeat as their last seen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.exceptions import RedisError

from chat_contracts import RetryableError
from chat_runtime import presence as keys
from chat_runtime.clock import Clock
from chat_users.store import UserStore

log = logging.getLogger(__name__)

#: Statuses cleared per sweep round (the next round takes the rest).
STATUS_BATCH = 200
#: Users announced offline per script call.
OFFLINE_BATCH = 200
#: A failed offline announcement is retried after this long (ms).
RETRY_MS = 1_000

#: KEYS: nodes zset, pending zset. ARGV: heartbeat ttl (ms), grace (ms), marker ttl (ms).
#: For every gateway whose last heartbeat is older than the ttl: drop its lease from each
#: of its users; a user left with no live lease (and not already in grace) gets a grace
#: marker holding the gateway's last heartbeat and a pending entry. Returns the dead
#: gateways' ids.
SWEEP_DEAD_GATEWAYS = """
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms - tonumber(ARGV[1]), 'WITHSCORES')
local swept = {}
for i = 1, #dead, 2 do
  local node = dead[i]
  local beat = dead[i + 1]
  local members = 'gw:u:' .. node
  for _, user in ipairs(redis.call('SMEMBERS', members)) do
    local conns = 'pr:c:' .. user
    redis.call('ZREM', conns, node)
    redis.call('ZREMRANGEBYSCORE', conns, '-inf', now_ms)
    local marker = 'pr:g:' .. user
    if redis.call('ZCARD', conns) == 0 and redis.call('EXISTS', marker) == 0 then
      redis.call('SET', marker, beat, 'PX', tonumber(ARGV[3]))
      redis.call('ZADD', KEYS[2], now_ms + tonumber(ARGV[2]), user)
    end
  end
  redis.call('DEL', members)
  redis.call('ZREM', KEYS[1], node)
  swept[#swept + 1] = node
end
return swept
"""

#: KEYS: pending zset. ARGV: batch size.
#: Takes the users whose grace ended; returns {user, last seen ms, ...} for those still
#: without a live lease (a reconnect deleted the marker: nothing to announce).
TAKE_DUE_OFFLINE = """
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {}
for _, user in ipairs(due) do
  redis.call('ZREM', KEYS[1], user)
  local marker = 'pr:g:' .. user
  local seen = redis.call('GET', marker)
  local conns = 'pr:c:' .. user
  redis.call('ZREMRANGEBYSCORE', conns, '-inf', now_ms)
  if seen and redis.call('ZCARD', conns) == 0 then
    redis.call('DEL', marker)
    out[#out + 1] = user
    out[#out + 1] = seen
  end
end
return out
"""

#: Announces one user's offline (user id, last seen).
OnOffline = Callable[[str, datetime], Awaitable[None]]
#: Announces one expired status (cleared).
OnExpired = Callable[[str], Awaitable[None]]


class StatusSweeper:
    """Clears expired custom statuses and announces each once."""

    def __init__(self, store: UserStore, clock: Clock, on_expired: OnExpired) -> None:
        self._store = store
        self._clock = clock
        self._on_expired = on_expired

    async def sweep(self) -> int:
        """One round; the number of statuses this replica cleared."""
        cleared = 0
        for status in await self._store.expired_statuses(self._clock.now(), STATUS_BATCH):
            if await self._store.clear_expired(status):
                cleared += 1
                await self._on_expired(status.user_id)
        return cleared


class PresenceSweeper:
    """Announces offline for users whose grace ended, dead gateways' users included."""

    def __init__(
        self,
        redis: Redis,
        on_offline: OnOffline,
        *,
        grace_ms: int,
        heartbeat_ttl_ms: int,
    ) -> None:
        self._on_offline = on_offline
        self._grace_ms = grace_ms
        self._heartbeat_ttl_ms = heartbeat_ttl_ms
        self._redis = redis
        self._dead = redis.register_script(SWEEP_DEAD_GATEWAYS)
        self._due = redis.register_script(TAKE_DUE_OFFLINE)

    async def sweep(self) -> int:
        """One round; the number of users announced offline by this replica."""
        dead = await self._dead(
            keys=[keys.NODES, keys.PENDING],
            args=[self._heartbeat_ttl_ms, self._grace_ms, keys.GRACE_MARKER_TTL_MS],
        )
        for node in dead:
            log.warning("gateway %s stopped heartbeating: its users go offline", _s(node))
        announced = 0
        while True:
            flat = await self._due(keys=[keys.PENDING], args=[OFFLINE_BATCH])
            due = [(_s(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)]
            for n, (user, seen_ms) in enumerate(due):
                try:
                    await self._on_offline(user, datetime.fromtimestamp(seen_ms / 1000, UTC))
                except RetryableError as exc:
                    # The chats directory (groups, messages) does not answer: every other
                    # user of the round would fail the same way (a rolling restart, a
                    # shutdown), so the round ends here, with one line, not 200 tracebacks.
                    log.warning("offline announcements paused (%s); %d retried", exc, len(due) - n)
                    for later, later_seen in due[n:]:
                        await self._requeue(later, later_seen)
                    return announced
                except Exception:
                    log.exception("offline announcement of %s failed; retried", user)
                    await self._requeue(user, seen_ms)
                    continue
                announced += 1
            if len(flat) < 2 * OFFLINE_BATCH:
                return announced

    async def _requeue(self, user_id: str, seen_ms: int) -> None:
        # NX: a reconnect since the take deleted the marker; keep it deleted.
        if await self._redis.set(
            keys.grace_key(user_id), seen_ms, nx=True, px=keys.GRACE_MARKER_TTL_MS
        ):
            now_ms = int(datetime.now(UTC).timestamp() * 1000)
            await self._redis.zadd(keys.PENDING, {user_id: now_ms + RETRY_MS})


async def every(period_ms: int, name: str, sweep: Callable[[], Awaitable[int]]) -> None:
    """Run `sweep` every `period_ms` until cancelled; a failed round is logged and retried."""
    while True:
        try:
            await sweep()
        except (RedisError, OSError) as exc:
            log.warning("%s sweep failed: %s", name, exc)
        except Exception:
            log.exception("%s sweep failed", name)
        await asyncio.sleep(period_ms / 1000)


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
