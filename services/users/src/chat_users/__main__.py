"""`python -m chat_users`: the users worker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from chat_runtime.bus import Bus
from chat_runtime.service import main, opened_store
from chat_runtime.settings import BaseSettings
from chat_runtime.worker import Router
from chat_users.handlers import DOMAIN, UserHandlers
from chat_users.store import MongoUserStore, SqliteUserStore, UserStore


class UsersSettings(BaseSettings, kw_only=True, frozen=True):
    """`CHAT_*` settings of the users worker (nothing beyond the shared ones yet)."""


@asynccontextmanager
async def build(settings: UsersSettings, bus: Bus) -> AsyncIterator[Router]:
    """Open the configured store, serve the handlers, close the store on exit."""
    del bus  # nothing to publish yet: presence fan-out is the gateway's
    # Typed as the repository Protocol, so handlers see no implementation.
    sqlite: Callable[[Path], UserStore] = SqliteUserStore
    mongo: Callable[[str, str], UserStore] = MongoUserStore
    async with opened_store(settings, "users.sqlite3", sqlite, mongo) as store:
        yield UserHandlers(store).router()


if __name__ == "__main__":
    main(DOMAIN, UsersSettings, build)
