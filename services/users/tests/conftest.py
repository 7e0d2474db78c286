"""Fixtures: a user store of each kind."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from chat_runtime.mongo import connect_mongo
from chat_testkit.mongo import mongo_url, unique_db_name
from chat_users.store import MongoUserStore, SqliteUserStore, UserStore


@pytest.fixture(scope="session")
def mongodb_url() -> Iterator[str]:
    """One MongoDB for the session, or a skip that names it."""
    with mongo_url() as url:
        yield url


@pytest_asyncio.fixture(params=["sqlite", "mongo"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[UserStore]:
    """An empty, opened store of each implementation."""
    if request.param == "sqlite":
        sqlite_store = SqliteUserStore(tmp_path / "users.sqlite3")
        await sqlite_store.open()
        try:
            yield sqlite_store
        finally:
            await sqlite_store.close()
        return
    url: str = request.getfixturevalue("mongodb_url")
    db_name = unique_db_name("chat_users_test")
    mongo_store = MongoUserStore(url, db_name)
    await mongo_store.open()
    try:
        yield mongo_store
    finally:
        await mongo_store.close()
        client, _ = connect_mongo(url, db_name)
        await client.drop_database(db_name)
        await client.close()
