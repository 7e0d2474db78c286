"""Fixtures: a user store of each kind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from chat_testkit.stores import contract_store
from chat_users.store import UserStore
from chat_users.store.mongo import MongoUserStore
from chat_users.store.sqlite import SqliteUserStore


@pytest_asyncio.fixture(params=["sqlite", "mongo"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[UserStore]:
    """An empty, opened store of each implementation."""
    async with contract_store(
        request, tmp_path, lambda d: SqliteUserStore(d / "users.sqlite3"), MongoUserStore
    ) as opened:
        yield opened
