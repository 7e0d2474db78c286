"""Typing indicators: throttled relay and server-side expiry (PROTOCOL.md, Typing).

A start is relayed at most once per user per chat per 2 s (a Redis `SET NX PX`, so the
throttle holds across gateways); every start, relayed or not, renews a local 10 s timer
that emits `typing:stop` if the client never does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from redis.asyncio import Redis

from chat_contracts import limits
from chat_contracts.bus import Actor

#: Called to relay a stop when a timer fires: (who was typing, chat key).
OnExpire = Callable[[Actor, str], Coroutine[Any, Any, None]]


class TypingRelay:
    """Throttle and expiry state for typing indicators started on this gateway."""

    def __init__(self, redis: Redis, expiry_ms: int, on_expire: OnExpire) -> None:
        self._redis = redis
        self._expiry_s = expiry_ms / 1000
        self._on_expire = on_expire
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, actor: Actor, chat: str) -> bool:
        """Renew the expiry; True when this start must be relayed (not throttled)."""
        self._arm(actor, chat)
        ok = await self._redis.set(
            f"ty:{chat}:{actor.user_id}", b"1", nx=True, px=limits.TYPING_THROTTLE_MS
        )
        return bool(ok)

    async def stop(self, user_id: str, chat: str) -> bool:
        """Clear the state; True when a start was pending (a stop is worth relaying)."""
        handle = self._timers.pop((user_id, chat), None)
        if handle is not None:
            handle.cancel()
        # The next start after an explicit stop is relayed at once.
        await self._redis.delete(f"ty:{chat}:{user_id}")
        return handle is not None

    def active(self, user_id: str) -> list[str]:
        """Chats where `user_id` is typing (started here, not stopped or expired)."""
        return [chat for (uid, chat) in self._timers if uid == user_id]

    def _arm(self, actor: Actor, chat: str) -> None:
        key = (actor.user_id, chat)
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(self._expiry_s, self._fire, actor, chat)

    def _fire(self, actor: Actor, chat: str) -> None:
        self._timers.pop((actor.user_id, chat), None)
        task = asyncio.get_running_loop().create_task(self._on_expire(actor, chat))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """Cancel every timer."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
