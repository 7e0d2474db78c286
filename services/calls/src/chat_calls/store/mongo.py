"""Call records in MongoDB: one document per call in `calls`, keyed by the call id."""

from __future__ import annotations

from typing import Any

import msgspec

from chat_contracts.server import CallRecord
from chat_runtime.mongo import Document, connect_mongo


class MongoCallStore:
    """`calls` documents: the record's wire fields (camelCase) plus `_id` = call id."""

    def __init__(self, url: str, db_name: str) -> None:
        self._client, db = connect_mongo(url, db_name)
        self._calls = db["calls"]

    async def open(self) -> None:
        """History scans one user's calls by id, as caller and as callee."""
        await self._calls.create_index([("callerId", 1), ("_id", -1)])
        await self._calls.create_index([("calleeId", 1), ("_id", -1)])

    async def close(self) -> None:
        """Close the client."""
        await self._client.close()

    async def save(self, record: CallRecord) -> None:
        """One replace-or-insert by `_id`."""
        doc: Document = {"_id": record.call_id, **msgspec.to_builtins(record)}
        await self._calls.replace_one({"_id": record.call_id}, doc, upsert=True)

    async def history(
        self, user_id: str, before: str | None, limit: int
    ) -> tuple[list[CallRecord], bool]:
        """An `$or` of the two indexed conditions, newest (highest id) first."""
        query: dict[str, Any] = {
            "$or": [
                {"callerId": user_id},
                {"calleeId": user_id, "reason": {"$ne": "blocked"}},
            ]
        }
        if before is not None:
            query["_id"] = {"$lt": before}
        docs = await self._calls.find(query).sort("_id", -1).limit(limit + 1).to_list()
        records = [_record(doc) for doc in docs[:limit]]
        return records, len(docs) > limit


def _record(doc: Document) -> CallRecord:
    fields = {k: v for k, v in doc.items() if k != "_id"}
    return msgspec.convert(fields, CallRecord)
