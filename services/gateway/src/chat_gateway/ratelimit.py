"""Per-user token buckets in Redis (PROTOCOL.md: rate limits), shared by all gateways."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from chat_gateway import redis_scripts


@dataclass(frozen=True, slots=True)
class Bucket:
    """A refill rate and a burst size."""

    name: str
    per_second: float
    burst: int


class RateLimiter:
    """Takes one token per event from the user's bucket for that kind of event."""

    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(redis_scripts.TOKEN_BUCKET)

    async def take(self, user_id: str, bucket: Bucket) -> int:
        """0 when allowed; otherwise the milliseconds until the next token."""
        allowed, wait = await self._script(
            keys=[f"rl:{bucket.name}:{user_id}"],
            args=[bucket.per_second / 1000, bucket.burst],
        )
        return 0 if int(allowed) else max(1, int(wait))
