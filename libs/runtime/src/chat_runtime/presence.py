"""Where presence lives in Redis, shared by its writer (gateway) and its readers (calls).

Keys (per user): `pr:c:<id>` a sorted set of gateway ids scored by lease expiry (ms since
the epoch; a dead gateway's entry lapses on its own, a gateway drops its entry when the
user's last local socket leaves); `pr:g:<id>` the offline grace marker; `pr:s:<id>` the
manual status.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis


def conns_key(user_id: str) -> str:
    """The user's gateway leases (sorted set, score = lease expiry in ms)."""
    return f"pr:c:{user_id}"


def grace_key(user_id: str) -> str:
    """Set while the user's last socket left less than the grace period ago."""
    return f"pr:g:{user_id}"


def status_key(user_id: str) -> str:
    """The manual status (`away`/`busy`; absent = online)."""
    return f"pr:s:{user_id}"


async def connected(redis: Redis, user_ids: Sequence[str], now_ms: int) -> list[bool]:
    """Whether each user has a socket on some live gateway right now (grace not counted).

    One pipelined round trip of ZCOUNTs, whatever the number of users.
    """
    if not user_ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for user_id in user_ids:
            pipe.zcount(conns_key(user_id), now_ms, "+inf")
        counts = await pipe.execute()
    return [bool(count) for count in counts]
