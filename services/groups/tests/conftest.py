"""Fixtures: a group store of each kind (the real NATS server is the root `nats_url`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from chat_groups.store import GroupStore, MongoGroupStore, SqliteGroupStore
from chat_testkit.stores import contract_store


@pytest_asyncio.fixture(params=["sqlite", "mongo"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[GroupStore]:
    """An empty, opened store of each implementation."""
    async with contract_store(
        request, tmp_path, lambda d: SqliteGroupStore(d / "groups.sqlite3"), MongoGroupStore
    ) as opened:
        yield opened
