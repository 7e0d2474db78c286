"""One fixture shape for every repository contract suite: SQLite always, MongoDB when real."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol, TypeVar

import pytest

from chat_runtime.mongo import connect_mongo, require_replica_set
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
    async with contract_stores(request, tmp_path, sqlite, mongo, count=1) as (store,):
        yield store


@asynccontextmanager
async def contract_stores(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sqlite: Callable[[Path], S],
    mongo: Callable[[str, str], S],
    *,
    count: int = 2,
) -> AsyncIterator[tuple[S, ...]]:
    """`count` opened store instances on one empty database, like `count` workers of
    one service: the same SQLite file (`sqlite(tmp_path)` each time), or the same
    MongoDB database through separate clients.

    The MongoDB must be a replica set (the stores use transactions): a standalone
    `CHAT_MONGODB_URL` fails the test with the reason.
    """
    stores: list[S] = []
    db_name = ""
    url = ""
    if request.param == "mongo":
        url = request.getfixturevalue("mongodb_url")
        await require_replica_set(url)
        db_name = unique_db_name()
    try:
        for _ in range(count):
            store = sqlite(tmp_path) if request.param == "sqlite" else mongo(url, db_name)
            await store.open()
            stores.append(store)
        yield tuple(stores)
    finally:
        for store in stores:
            await store.close()
        if db_name:
            client, _ = connect_mongo(url, db_name)
            await client.drop_database(db_name)
            await client.close()


#: Where `cancelled_at` cancels a command: after 0-5 event-loop turns (SQLite: before or
#: after its job reached the database thread), then after 0.5-32 ms of wall time
#: (MongoDB: between the round trips of one command).
CANCEL_POINTS: list[tuple[int, float]] = [
    *((turns, 0.0) for turns in range(6)),
    *((0, 0.0005 * 2**j) for j in range(7)),
]


async def cancelled_at(
    point: tuple[int, float], command: Awaitable[object], *expected: type[Exception]
) -> None:
    """Run a store command, cancel it at `point` (a worker stopped, a command abandoned
    half-way), and wait until it has stopped; `expected` refusals are ignored too (a
    cancelled command may have finished with one)."""
    task = asyncio.ensure_future(command)
    turns, seconds = point
    for _ in range(turns):
        await asyncio.sleep(0)
    if seconds:
        await asyncio.sleep(seconds)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, *expected):
        await task
