"""Presence in Redis: who is online anywhere, the offline grace period, manual status.

Keys: see `chat_runtime.presence` (the calls service reads the same leases). The grace
marker is set when the last socket left; its token lets only the latest disconnect
announce offline.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from redis.asyncio import Redis

from chat_gateway import redis_scripts
from chat_runtime.presence import conns_key as _conns
from chat_runtime.presence import grace_key as _grace
from chat_runtime.presence import status_key as _status


class Presence:
    """Presence transitions of the users with sockets on this gateway."""

    def __init__(self, redis: Redis, node_id: str, lease_ms: int, grace_ms: int) -> None:
        self._redis = redis
        self._node = node_id
        self._lease_ms = lease_ms
        self._grace_ms = grace_ms
        self._connect = redis.register_script(redis_scripts.CONNECT)
        self._disconnect = redis.register_script(redis_scripts.DISCONNECT)
        self._expire = redis.register_script(redis_scripts.EXPIRE)

    async def connected(self, user_id: str) -> bool:
        """The user's first socket here; True when "online" must be announced."""
        announce = await self._connect(
            keys=[_conns(user_id), _grace(user_id)], args=[self._node, self._lease_ms]
        )
        return bool(int(announce))

    async def disconnected(self, user_id: str) -> str | None:
        """The user's last socket here left; a grace token when no socket is left anywhere."""
        token = uuid.uuid4().hex
        last = await self._disconnect(
            keys=[_conns(user_id), _grace(user_id)], args=[self._node, token, self._grace_ms]
        )
        return token if int(last) else None

    async def grace_ended(self, user_id: str, token: str) -> bool:
        """After the grace period: True when "offline" must be announced now."""
        return bool(int(await self._expire(keys=[_conns(user_id), _grace(user_id)], args=[token])))

    async def refresh(self, user_ids: Iterable[str], now_ms: int) -> None:
        """Extend this gateway's lease for every local user (one pipeline)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_id in user_ids:
                pipe.zadd(_conns(user_id), {self._node: now_ms + self._lease_ms})
                pipe.pexpire(_conns(user_id), self._lease_ms)
            await pipe.execute()

    async def manual_status(self, user_id: str) -> str:
        """`online`, `away` or `busy` as the user set it."""
        value = await self._redis.get(_status(user_id))
        if isinstance(value, bytes):
            return value.decode()
        return value or "online"

    async def set_manual_status(self, user_id: str, status: str) -> bool:
        """Store the manual status; True when it changed."""
        previous = await self.manual_status(user_id)
        if status == "online":
            await self._redis.delete(_status(user_id))
        else:
            await self._redis.set(_status(user_id), status)
        return previous != status

    async def online(self, user_ids: list[str], now_ms: int) -> list[bool]:
        """Whether each user counts as online (a live lease, or still in the grace period)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_id in user_ids:
                pipe.zcount(_conns(user_id), now_ms, "+inf")
                pipe.exists(_grace(user_id))
            flags = await pipe.execute()
        return [bool(flags[i] or flags[i + 1]) for i in range(0, len(flags), 2)]
