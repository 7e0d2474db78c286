"""`python -m chat_messages`: the messages worker (settings from `CHAT_*`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from chat_contracts import subjects
from chat_messages.groups import DEFAULT_GROUPS_TIMEOUT_MS, BusGroupDirectory
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
    async with opened_store(settings, SQLITE_FILE, sqlite, mongo) as store:
        clock = SystemClock()
        handlers = MessageHandlers(
            store=store,
            groups=BusGroupDirectory(bus, timeout_ms=settings.groups_timeout_ms),
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
