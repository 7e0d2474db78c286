"""`python -m chat_messages`: the messages worker (settings from `CHAT_*`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

from chat_contracts import limits, subjects
from chat_messages.blocks import BlockGuard
from chat_messages.context import Deps
from chat_messages.groups import (
    DEFAULT_GROUPS_TIMEOUT_MS,
    BusGroupDirectory,
    CachingGroupDirectory,
)
from chat_messages.handlers import build_router
from chat_messages.media import MediaGate
from chat_messages.push import PushBatcher
from chat_messages.rules import Rules
from chat_messages.store import MessageStore
from chat_messages.store.mongo import MongoMessageStore
from chat_messages.store.sqlite import SqliteMessageStore
from chat_runtime.blocks import HiddenSets
from chat_runtime.bus import Bus, Publisher
from chat_runtime.clock import Clock, SystemClock, TimeOrderedIds
from chat_runtime.jetstream import ensure_push_stream
from chat_runtime.service import main, opened_store
from chat_runtime.settings import BaseSettings
from chat_runtime.worker import Router

SQLITE_FILE = "messages.sqlite3"


class MessagesSettings(BaseSettings, kw_only=True, frozen=True):
    """The shared settings plus the groups look-up deadline and the lifecycle rules.

    - `CHAT_EDIT_WINDOW_S` (900) / `CHAT_DELETE_WINDOW_S` (3600): how long after
      `createdAt` a sender may edit / delete for everyone.
    - `CHAT_PIN_ADMINS_ONLY` (true): in groups only ADMINs pin.
    - `CHAT_CLOCK_OFFSET_MS` (0): added to the system clock; lets a test run a worker
      "later" than the messages it wrote instead of sleeping through a window.
    """

    groups_timeout_ms: int = DEFAULT_GROUPS_TIMEOUT_MS
    edit_window_s: int = limits.EDIT_WINDOW_S
    delete_window_s: int = limits.DELETE_WINDOW_S
    pin_admins_only: bool = True
    clock_offset_ms: int = 0

    def rules(self) -> Rules:
        """The configured rules."""
        return Rules(
            edit_window=timedelta(seconds=self.edit_window_s),
            delete_window=timedelta(seconds=self.delete_window_s),
            pin_admins_only=self.pin_admins_only,
        )


class OffsetClock:
    """The system clock moved by a fixed offset (`CHAT_CLOCK_OFFSET_MS`)."""

    def __init__(self, offset_ms: int, inner: Clock | None = None) -> None:
        self._offset = timedelta(milliseconds=offset_ms)
        self._inner = inner or SystemClock()

    def now(self) -> datetime:
        """The inner clock's time plus the offset."""
        return self._inner.now() + self._offset


@asynccontextmanager
async def build(settings: MessagesSettings, bus: Bus) -> AsyncIterator[Router]:
    """Open the store, serve the router, close the store on the way out."""
    # Typed as the repository Protocol, so handlers see no implementation.
    sqlite: Callable[[Path], MessageStore] = SqliteMessageStore
    mongo: Callable[[str, str], MessageStore] = MongoMessageStore
    directory = CachingGroupDirectory(BusGroupDirectory(bus, timeout_ms=settings.groups_timeout_ms))
    # Every worker keeps its own cache, so every worker hears every change (no queue).
    await bus.subscribe(subjects.GROUP_MEMBERSHIP_CHANGED, directory.on_change)
    hidden = HiddenSets(bus)
    await bus.subscribe(subjects.USER_BLOCK_CHANGED, hidden.on_change)
    blocks = BlockGuard(hidden)
    # New messages are kept for push from the first one on (README, Push notifications).
    await ensure_push_stream(bus, settings.push_stream_storage)
    pushes = PushBatcher(bus, storage=settings.push_stream_storage)
    async with opened_store(settings, SQLITE_FILE, sqlite, mongo) as store:
        clock: Clock = (
            OffsetClock(settings.clock_offset_ms) if settings.clock_offset_ms else SystemClock()
        )
        deps = Deps(
            store=store,
            groups=directory,
            publisher=Publisher(bus),
            clock=clock,
            ids=TimeOrderedIds(clock),
            rules=settings.rules(),
            blocks=blocks,
            pushes=pushes,
            media=MediaGate(bus),
        )
        try:
            yield build_router(deps)
        finally:
            await pushes.close()


def run() -> None:
    """Entry point."""
    main(subjects.MESSAGES, MessagesSettings, build)


if __name__ == "__main__":
    run()
