"""`python -m chat_calls`: the calls worker (signaling, call state, sweeper, records)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from chat_calls.handlers import DOMAIN, CallHandlers
from chat_calls.settings import CallsSettings
from chat_calls.state import CallState
from chat_calls.store import CallStore
from chat_calls.store.mongo import MongoCallStore
from chat_calls.store.sqlite import SqliteCallStore
from chat_calls.sweeper import Sweeper
from chat_runtime.bus import Bus
from chat_runtime.clock import SystemClock, TimeOrderedIds
from chat_runtime.ops import PROCESS
from chat_runtime.redis_client import connect_redis
from chat_runtime.service import main, opened_store
from chat_runtime.worker import Router, cancel_tasks

SQLITE_FILE = "calls.sqlite3"


@asynccontextmanager
async def build(settings: CallsSettings, bus: Bus) -> AsyncIterator[Router]:
    """Redis and the store open, the sweeper running, for as long as the router serves."""
    sqlite: Callable[[Path], CallStore] = SqliteCallStore
    mongo: Callable[[str, str], CallStore] = MongoCallStore
    redis = connect_redis(settings)
    PROCESS.add_check("redis", redis.ping)
    clock = SystemClock()
    state = CallState(redis, settings.timing)
    try:
        async with opened_store(settings, SQLITE_FILE, sqlite, mongo) as store:
            handlers = CallHandlers(
                state=state,
                store=store,
                bus=bus,
                ice=settings.ice,
                clock=clock,
                ids=TimeOrderedIds(clock),
                push_storage=settings.push_stream_storage,
            )
            sweeper = asyncio.get_running_loop().create_task(
                Sweeper(handlers, state, settings.call_sweep_interval_ms).run()
            )
            try:
                yield handlers.router()
            finally:
                await cancel_tasks([sweeper])
    finally:
        await redis.aclose()


def run() -> None:
    """Entry point."""
    main(DOMAIN, CallsSettings, build)


if __name__ == "__main__":
    run()
