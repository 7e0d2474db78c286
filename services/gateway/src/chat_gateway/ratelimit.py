"""Per-user token buckets in Redis (PROTOCOL.md: rate limits), shared by all gateways."""

from __future__ import annotations

from dataclasses import dataclass

from chat_gateway import redis_scripts
from chat_gateway.resp import ScriptRunner


@dataclass(frozen=True, slots=True)
class Bucket:
    """A refill rate and a burst size."""

    name: str
    per_second: float
    burst: int


class RateLimiter:
    """Takes one token per event from the user's bucket for that kind of event."""

    def __init__(self, redis_url: str) -> None:
        # Its own pipelined connection (see resp.py): this runs once per client event.
        self._script = ScriptRunner(redis_url, redis_scripts.TOKEN_BUCKET)

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
