"""`python -m chat_messages`: the messages worker (settings from `CHAT_*`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from chat_contracts import subjects
from chat_messages.groups import (
    DEFAULT_GROUPS_TIMEOUT_MS,
    BusGroupDirectory,
    CachingGroupDirectory,
)
from chat_messages.handlers import MessageHandlers, build_router
from chat_messages.store import MessageStore, MongoMessageStore, SqliteMessageStore
from chat_runtime.bus import Bus, Publisher
from chat_runtime.clock import SystemClock, TimeOrderedIds
from chat_runtime.service import main, opened_store
from chat_runtime.settings import BaseSettings
from chat_runtime.worker import Router

SQLITE_FILE = "messages.sqlite3"


class MessagesSettings(BaseSettings, kw_only=True, frozen=True):
    """The shared settings plus the groups look-up deadline (`CHAT_GROUPS_TIMEOUT_MS`)."""

    groups_timeout_ms: int = DEFAULT_GROUPS_TIMEOUT_MS


@asynccontextmanager
async def build(settings: MessagesSettings, bus: Bus) -> AsyncIterator[Router]:
    """Open the store, serve the router, close the store on the way out."""
    # Typed as the repository Protocol, so handlers see no implementation.
    sqlite: Callable[[Path], MessageStore] = SqliteMessageStore
    mongo: Callable[[str, str], MessageStore] = MongoMessageStore
    directory = CachingGroupDirectory(BusGroupDirectory(bus, timeout_ms=settings.groups_timeout_ms))
    # Every worker keeps its own cache, so every worker hears every change (no queue).
    await bus.subscribe(subjects.GROUP_MEMBERSHIP_CHANGED, directory.on_change)
    async with opened_store(settings, SQLITE_FILE, sqlite, mongo) as store:
        clock = SystemClock()
        handlers = MessageHandlers(
            store=store,
            groups=directory,
            publisher=Publisher(bus),
            clock=clock,
            ids=TimeOrderedIds(clock),
        )
        yield build_router(handlers)


def run() -> None:
    """Entry point."""
    main(subjects.MESSAGES, MessagesSettings, build)


if __name__ == "__main__":
    run()
