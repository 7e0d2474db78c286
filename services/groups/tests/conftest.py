"""Fixtures: a group store of each kind, and two instances of each on one database
(two workers); the real NATS server is the root `nats_url`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from chat_groups.store import GroupStore
from chat_groups.store.mongo import MongoGroupStore
from chat_groups.store.sqlite import SqliteGroupStore
from chat_testkit.stores import contract_store, contract_stores


@pytest_asyncio.fixture(params=["sqlite", "mongo"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[GroupStore]:
    """An empty, opened store of each implementation."""
    async with contract_store(
        request, tmp_path, lambda d: SqliteGroupStore(d / "groups.sqlite3"), MongoGroupStore
    ) as opened:
        yield opened


@pytest_asyncio.fixture(params=["sqlite", "mongo"])
async def two_stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[GroupStore, ...]]:
    """Two opened store instances on one empty database, like two groups workers."""
    async with contract_stores(
        request, tmp_path, lambda d: SqliteGroupStore(d / "groups.sqlite3"), MongoGroupStore
    ) as opened:
        yield opened


@pytest_asyncio.fixture(params=["mongo"])
async def mongo_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[GroupStore]:
    """The MongoDB store only (for failures only MongoDB can inject), or the skip."""
    async with contract_store(
        request, tmp_path, lambda d: SqliteGroupStore(d / "groups.sqlite3"), MongoGroupStore
    ) as opened:
        yield opened
