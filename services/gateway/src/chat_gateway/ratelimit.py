"""Per-user token buckets in Redis (PROTOCOL.md: rate limits), shared by all gateways.

The buckets live in Redis, but a gateway takes tokens from them in blocks (leases) and
spends them locally, so a busy user costs one Redis round trip per block instead of one
per event (at 1,000 messages/s the per-event EVALSHA was redis-server's whole share,
~58 µs a message, plus a socket write in the gateway).

Tolerance, across any number of gateways: every token spent was taken out of the one
Redis bucket, so over a window of `w` seconds a user gets at most
`burst + rate * w + lease_size` events per gateway holding a lease (a block taken
before the window and spent inside it). A user refused on one gateway may have up to
`lease_size - 1` unused tokens at another; they expire after `LEASE_TTL_S`. Buckets
below one token a second (`group:create`, `sync`, the shared "other" bucket at the
default 60/min) lease one token at a time: exact, as before.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from chat_contracts import routes
from chat_gateway import redis_scripts
from chat_gateway.resp import DEFAULT_TIMEOUT_MS, Locate, ScriptRunner
from chat_gateway.settings import GatewaySettings


@dataclass(frozen=True, slots=True)
class Bucket:
    """A refill rate and a burst size."""

    name: str
    per_second: float
    burst: int


def per_minute(name: str, per_min: float) -> Bucket:
    """A bucket of `per_min` tokens a minute whose burst is one minute's worth."""
    return Bucket(name, per_min / 60, max(1, int(per_min)))


def buckets_by_event(settings: GatewaySettings) -> dict[str, Bucket]:
    """The bucket of every client event: `message:send`, `typing:*`, `group:create` and
    `sync` have their own; every other command shares one (PROTOCOL.md rate limits)."""
    typing = Bucket("typing", settings.rate_typing_per_s, int(settings.rate_typing_per_s))
    other = per_minute("other", settings.rate_other_per_min)
    own = {
        routes.MESSAGE_SEND.event: Bucket(
            "send", settings.rate_send_per_s, settings.rate_send_burst
        ),
        # Costs that grow with a size get their own, stricter buckets (limits.py).
        routes.GROUP_CREATE.event: per_minute("create", settings.rate_group_create_per_min),
        routes.SYNC.event: per_minute("sync", settings.rate_sync_per_min),
    }
    return {
        route.event: own.get(route.event)
        or (typing if route.event.startswith("typing:") else other)
        for route in routes.ROUTES
    }


#: A lease is at most one second of the bucket's refill ...
LEASE_SLICE_S = 1.0
#: ... never more than half its burst (so one gateway cannot take a whole burst at once
#: from a user's other devices), and unused tokens are dropped after 10 s.
LEASE_TTL_S = 10.0
#: Expired leases are swept once this many new ones were taken (bounded memory).
_SWEEP_EVERY = 4096


def lease_size(bucket: Bucket) -> int:
    """How many tokens one Redis call takes for `bucket` (at least 1)."""
    return max(1, min(bucket.burst // 2, math.ceil(bucket.per_second * LEASE_SLICE_S)))


class Leases:
    """Tokens this gateway holds, by bucket key, each block with an expiry (pure)."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._held: dict[str, tuple[int, float]] = {}
        self._added = 0

    def take(self, key: str) -> bool:
        """Spend one held token of `key`; False when none is held (or it expired)."""
        held = self._held.get(key)
        if held is None:
            return False
        tokens, expires = held
        if expires <= self._now():
            del self._held[key]
            return False
        if tokens <= 1:
            del self._held[key]
        else:
            self._held[key] = (tokens - 1, expires)
        return True

    def add(self, key: str, tokens: int) -> None:
        """Hold `tokens` more of `key` for `LEASE_TTL_S` (a new block from Redis)."""
        if tokens <= 0:
            return
        now = self._now()
        held = self._held.get(key)
        keep = held[0] if held is not None and held[1] > now else 0
        self._held[key] = (keep + tokens, now + LEASE_TTL_S)
        self._added += 1
        if self._added >= _SWEEP_EVERY:
            self._added = 0
            self._held = {k: v for k, v in self._held.items() if v[1] > now}

    def __len__(self) -> int:
        return len(self._held)


class RateLimiter:
    """Takes one token per event from the user's bucket for that kind of event."""

    def __init__(
        self,
        redis_url: str,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        locate: Locate | None = None,
        leases: Leases | None = None,
    ) -> None:
        # Its own pipelined connection (see resp.py): this runs once per lease.
        self._script = ScriptRunner(redis_url, redis_scripts.TOKEN_BUCKET, timeout_ms, locate)
        self._leases = leases or Leases()
        self._fetching: dict[str, asyncio.Future[None]] = {}

    def close(self) -> None:
        """Close the limiter's Redis connection."""
        self._script.close()

    async def take(self, user_id: str, bucket: Bucket) -> int:
        """0 when allowed; otherwise the milliseconds until the next token."""
        key = f"rl:{bucket.name}:{user_id}"
        while not self._leases.take(key):
            fetching = self._fetching.get(key)
            if fetching is None:
                break
            # Another event of this user is taking a block: share it rather than take
            # one block per waiting event (a burst of 9 would take 45 tokens).
            await fetching
        else:
            return 0
        done = asyncio.get_running_loop().create_future()
        self._fetching[key] = done
        try:
            granted, wait = await self._script(
                keys=[key],
                args=[bucket.per_second / 1000, bucket.burst, lease_size(bucket)],
            )
        finally:
            del self._fetching[key]
            done.set_result(None)
        granted = int(granted)
        if granted <= 0:
            return max(1, int(wait))
        self._leases.add(key, granted - 1)
        return 0
