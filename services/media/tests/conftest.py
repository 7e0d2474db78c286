"""Fixtures: a media store and a file storage of each implementation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from chat_media.storage import Storage
from chat_media.storage.fs import FsStorage
from chat_media.storage.gridfs import GridFsStorage
from chat_media.store import MediaStore
from chat_media.store.mongo import MongoMediaStore
from chat_media.store.sqlite import SqliteMediaStore
from chat_testkit.stores import contract_store


@pytest_asyncio.fixture(params=["sqlite", "mongo"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MediaStore]:
    """An empty, opened media store of each implementation."""
    async with contract_store(
        request, tmp_path, lambda d: SqliteMediaStore(d / "media.sqlite3"), MongoMediaStore
    ) as opened:
        yield opened


@pytest_asyncio.fixture(params=["sqlite", "mongo"], ids=["fs", "gridfs"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    """An empty, opened file storage of each implementation (GridFS needs MongoDB)."""
    async with contract_store(
        request, tmp_path, lambda d: FsStorage(d / "files"), GridFsStorage
    ) as opened:
        yield opened
