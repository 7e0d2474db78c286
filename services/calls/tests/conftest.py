"""Fixtures: a call store of each kind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from chat_calls.store import CallStore
from chat_calls.store.mongo import MongoCallStore
from chat_calls.store.sqlite import SqliteCallStore
from chat_testkit.stores import contract_store


@pytest_asyncio.fixture(params=["sqlite", "mongo"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CallStore]:
    """An empty, opened store of each implementation."""
    async with contract_store(
        request, tmp_path, lambda d: SqliteCallStore(d / "calls.sqlite3"), MongoCallStore
    ) as opened:
        yield opened
