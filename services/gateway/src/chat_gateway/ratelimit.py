"""Per-user token buckets in Redis (PROTOCOL.md: rate limits), shared by all gateways."""

from __future__ import annotations

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


class RateLimiter:
    """Takes one token per event from the user's bucket for that kind of event."""

    def __init__(
        self, redis_url: str, timeout_ms: int = DEFAULT_TIMEOUT_MS, locate: Locate | None = None
    ) -> None:
        # Its own pipelined connection (see resp.py): this runs once per client event.
        self._script = ScriptRunner(redis_url, redis_scripts.TOKEN_BUCKET, timeout_ms, locate)

    def close(self) -> None:
        """Close the limiter's Redis connection."""
        self._script.close()

    async def take(self, user_id: str, bucket: Bucket) -> int:
        """0 when allowed; otherwise the milliseconds until the next token."""
        allowed, wait = await self._script(
            keys=[f"rl:{bucket.name}:{user_id}"],
            args=[bucket.per_second / 1000, bucket.burst],
        )
        return 0 if int(allowed) else max(1, int(wait))
