"""The presence leases as readers see them (the gateway writes them)."""

from __future__ import annotations

from redis.asyncio import Redis

from chat_runtime.presence import connected, conns_key


async def test_a_live_lease_counts_an_expired_one_does_not(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        now = 1_000_000
        await redis.delete(*(conns_key(u) for u in ("on", "lapsed", "never", "two")))
        await redis.zadd(conns_key("on"), {"gw-1": now + 60_000})
        await redis.zadd(conns_key("lapsed"), {"gw-dead": now - 1})
        await redis.zadd(conns_key("two"), {"gw-dead": now - 1, "gw-2": now + 5})
        got = await connected(redis, ["on", "lapsed", "never", "two", "on"], now)
        assert got == [True, False, False, True, True]
        assert await connected(redis, [], now) == []
    finally:
        await redis.aclose()
