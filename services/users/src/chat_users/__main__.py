"""`python -m chat_users`: the users worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from chat_runtime.bus import Bus
from chat_runtime.service import main
from chat_runtime.settings import BaseSettings
from chat_runtime.worker import Router
from chat_users.handlers import DOMAIN, UserHandlers
from chat_users.store import MongoUserStore, SqliteUserStore


class UsersSettings(BaseSettings, kw_only=True, frozen=True):
    """`CHAT_*` settings of the users worker (nothing beyond the shared ones yet)."""


@asynccontextmanager
async def build(settings: UsersSettings, bus: Bus) -> AsyncIterator[Router]:
    """Open the configured store, serve the handlers, close the store on exit."""
    del bus  # nothing to publish yet: presence fan-out is the gateway's
    store: SqliteUserStore | MongoUserStore
    if settings.store == "mongo":
        store = MongoUserStore(settings.mongodb_url, settings.mongodb_db)
    else:
        store = SqliteUserStore(Path(settings.sqlite_dir) / "users.sqlite3")
    await store.open()
    try:
        yield UserHandlers(store).router()
    finally:
        await store.close()


if __name__ == "__main__":
    main(DOMAIN, UsersSettings, build)
