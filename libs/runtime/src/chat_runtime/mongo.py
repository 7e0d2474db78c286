"""MongoDB through PyMongo's async API (`AsyncMongoClient`; Motor is deprecated)."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]


def connect_mongo(
    url: str, db_name: str
) -> tuple[AsyncMongoClient[Document], AsyncDatabase[Document]]:
    """A client (connects lazily) and the named database.

    `tz_aware` so that datetimes come back as UTC-aware values, like the ones we store.
    """
    client: AsyncMongoClient[Document] = AsyncMongoClient(url, tz_aware=True, appname="chat")
    return client, client[db_name]
