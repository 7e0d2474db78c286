"""One fixture shape for every repository contract suite: SQLite always, MongoDB when real."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol, TypeVar

import pytest

from chat_runtime.mongo import connect_mongo
from chat_testkit.mongo import unique_db_name


class Opens(Protocol):
    """What every store implementation offers besides its repository methods."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...


S = TypeVar("S", bound=Opens)


@asynccontextmanager
async def contract_store(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sqlite: Callable[[Path], S],
    mongo: Callable[[str, str], S],
) -> AsyncIterator[S]:
    """An opened, empty store of the kind named by `request.param` ("sqlite" or "mongo").

    MongoDB comes from the session fixture `mongodb_url` (root conftest), which skips the
    test with the reason when no real MongoDB is reachable; each test gets a fresh
    database, dropped afterwards.
    """
    if request.param == "sqlite":
        store = sqlite(tmp_path)
        await store.open()
        try:
            yield store
        finally:
            await store.close()
        return
    url: str = request.getfixturevalue("mongodb_url")
    db_name = unique_db_name()
    store = mongo(url, db_name)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
        client, _ = connect_mongo(url, db_name)
        await client.drop_database(db_name)
        await client.close()
