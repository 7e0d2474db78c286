"""`python -m chat_users`: the users worker and its sweeps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

from chat_contracts import limits, subjects
from chat_runtime.bus import Bus
from chat_runtime.clock import SystemClock
from chat_runtime.redis_client import connect_redis
from chat_runtime.service import main, opened_store
from chat_runtime.settings import RedisSettings
from chat_runtime.worker import Router, cancel_tasks
from chat_users import domain
from chat_users.directory import ChatDirectory
from chat_users.handlers import DOMAIN, user_handlers
from chat_users.store import UserStore
from chat_users.store.mongo import MongoUserStore
from chat_users.store.sqlite import SqliteUserStore
from chat_users.sweeper import PresenceSweeper, StatusSweeper, every


class UsersSettings(RedisSettings, kw_only=True, frozen=True):
    """`CHAT_*` settings of the users worker (Redis: presence sweeps, `RedisSettings`)."""

    #: Tell a blocked user that they were blocked (`user:blocked`; PROTOCOL.md: on).
    notify_blocked: bool = True
    #: Offline is announced this long after a user's last socket left (ms); the same
    #: variable the gateways read.
    presence_grace_ms: int = limits.PRESENCE_GRACE_MS
    #: A gateway whose heartbeat is older than this is dead (ms): 3 missed beats at the
    #: gateways' default `CHAT_HEARTBEAT_MS` of 5 s.
    heartbeat_ttl_ms: int = 15_000
    #: How often the offline and status sweeps run (ms).
    presence_sweep_ms: int = 1_000
    status_sweep_ms: int = 1_000


@asynccontextmanager
async def build(settings: UsersSettings, bus: Bus) -> AsyncIterator[Router]:
    """Open the store, serve the handlers, run the sweeps; close everything on exit."""
    # Typed as the repository Protocol, so handlers see no implementation.
    sqlite: Callable[[Path], UserStore] = SqliteUserStore
    mongo: Callable[[str, str], UserStore] = MongoUserStore
    directory = ChatDirectory(bus)
    # Every worker keeps its own size cache, so every worker hears every change.
    await bus.subscribe(subjects.GROUP_MEMBERSHIP_CHANGED, directory.on_membership)
    redis = connect_redis(settings)
    clock = SystemClock()
    async with opened_store(settings, "users.sqlite3", sqlite, mongo) as store:
        handlers = user_handlers(
            store,
            bus,
            clock=clock,
            directory=directory,
            notify_blocked=settings.notify_blocked,
        )

        async def expired(user_id: str) -> None:
            await handlers.announce_status(user_id, None)

        async def offline(user_id: str, seen: datetime) -> None:
            await store.record(domain.Sighting(user_id=user_id, seen_at=seen))
            await handlers.announce_presence(user_id, "offline", seen, None)

        statuses = StatusSweeper(store, clock, expired)
        presence = PresenceSweeper(
            redis,
            offline,
            grace_ms=settings.presence_grace_ms,
            heartbeat_ttl_ms=settings.heartbeat_ttl_ms,
        )
        tasks = [
            asyncio.ensure_future(every(settings.status_sweep_ms, "status", statuses.sweep)),
            asyncio.ensure_future(every(settings.presence_sweep_ms, "presence", presence.sweep)),
        ]
        try:
            yield handlers.router()
        finally:
            await cancel_tasks(tasks)
            await redis.aclose()


if __name__ == "__main__":
    main(DOMAIN, UsersSettings, build)
