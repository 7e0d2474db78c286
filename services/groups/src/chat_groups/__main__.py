"""`python -m chat_groups`: the groups worker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from chat_groups.handlers import DOMAIN, GroupHandlers
from chat_groups.store import GroupStore
from chat_groups.store.mongo import MongoGroupStore
from chat_groups.store.sqlite import SqliteGroupStore
from chat_runtime.bus import Bus, Publisher
from chat_runtime.clock import SystemClock, TimeOrderedIds
from chat_runtime.service import main, opened_store
from chat_runtime.settings import BaseSettings
from chat_runtime.worker import Router


class GroupsSettings(BaseSettings, kw_only=True, frozen=True):
    """`CHAT_*` settings of the groups worker (nothing beyond the shared ones yet)."""


@asynccontextmanager
async def build(settings: GroupsSettings, bus: Bus) -> AsyncIterator[Router]:
    """Open the configured store, serve the handlers, close the store on exit."""
    # Typed as the repository Protocol, so handlers see no implementation.
    sqlite: Callable[[Path], GroupStore] = SqliteGroupStore
    mongo: Callable[[str, str], GroupStore] = MongoGroupStore
    async with opened_store(settings, "groups.sqlite3", sqlite, mongo) as store:
        clock = SystemClock()
        yield GroupHandlers(store, Publisher(bus), clock, TimeOrderedIds(clock)).router()


if __name__ == "__main__":
    main(DOMAIN, GroupsSettings, build)
