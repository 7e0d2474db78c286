"""`python -m chat_groups`: the groups worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from chat_groups.handlers import DOMAIN, GroupHandlers
from chat_groups.store import MongoGroupStore, SqliteGroupStore
from chat_runtime.bus import Bus, Publisher
from chat_runtime.clock import SystemClock, TimeOrderedIds
from chat_runtime.service import main
from chat_runtime.settings import BaseSettings
from chat_runtime.worker import Router


class GroupsSettings(BaseSettings, kw_only=True, frozen=True):
    """`CHAT_*` settings of the groups worker (nothing beyond the shared ones yet)."""


@asynccontextmanager
async def build(settings: GroupsSettings, bus: Bus) -> AsyncIterator[Router]:
    """Open the configured store, serve the handlers, close the store on exit."""
    store: SqliteGroupStore | MongoGroupStore
    if settings.store == "mongo":
        store = MongoGroupStore(settings.mongodb_url, settings.mongodb_db)
    else:
        store = SqliteGroupStore(Path(settings.sqlite_dir) / "groups.sqlite3")
    await store.open()
    try:
        clock = SystemClock()
        handlers = GroupHandlers(store, Publisher(bus), clock, TimeOrderedIds(clock))
        yield handlers.router()
    finally:
        await store.close()


if __name__ == "__main__":
    main(DOMAIN, GroupsSettings, build)
