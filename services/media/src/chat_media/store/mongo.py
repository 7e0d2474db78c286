"""The media repository in MongoDB: `media_sessions`, `media`, `media_places`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from chat_media import domain
from chat_media.domain import Kind, Limits, Media, Place, State, UploadSession
from chat_runtime.mongo import Document, connect_mongo, in_transaction


def _session(doc: Document) -> UploadSession:
    return UploadSession(
        upload_id=doc["_id"],
        user_id=doc["user_id"],
        file_name=doc["file_name"],
        size=doc["size"],
        received=doc["received"],
        state=State(doc["state"]),
        created_at=doc["created_at"],
        expires_at=doc["expires_at"],
        mime=doc.get("mime"),
        media_id=doc.get("media_id"),
        error=doc.get("error"),
    )


def _media(doc: Document) -> Media:
    return Media(
        media_id=doc["_id"],
        upload_id=doc["upload_id"],
        owner_id=doc["owner_id"],
        file_name=doc["file_name"],
        mime=doc["mime"],
        kind=Kind(doc["kind"]),
        size=doc["size"],
        key=doc["key"],
        thumb_key=doc.get("thumb_key"),
        width=doc.get("width"),
        height=doc.get("height"),
        created_at=doc["created_at"],
        deleted=bool(doc.get("deleted", False)),
    )


def _place(doc: Document) -> Place:
    return Place(
        media_id=doc["media_id"],
        message_id=doc["message_id"],
        sender_id=doc["sender_id"],
        chat=doc["chat"],
        client_message_id=doc.get("client_message_id"),
    )


class MongoMediaStore:
    """Sessions, media and places in MongoDB."""

    def __init__(self, url: str, db_name: str) -> None:
        self._client, db = connect_mongo(url, db_name)
        self._sessions = db["media_sessions"]
        self._media = db["media"]
        self._places = db["media_places"]
        self._users = db["media_users"]

    async def open(self) -> None:
        await self._sessions.create_index([("user_id", ASCENDING), ("created_at", ASCENDING)])
        await self._sessions.create_index([("state", ASCENDING), ("expires_at", ASCENDING)])
        await self._places.create_index(
            [("media_id", ASCENDING), ("message_id", ASCENDING)], unique=True
        )
        await self._places.create_index("message_id")
        await self._places.create_index(
            [("media_id", ASCENDING), ("sender_id", ASCENDING), ("client_message_id", ASCENDING)],
            unique=True,
            partialFilterExpression={"client_message_id": {"$type": "string"}},
        )

    async def close(self) -> None:
        await self._client.close()

    async def open_session(
        self, session: UploadSession, limits: Limits, day_start: datetime
    ) -> None:
        """Count, decide and insert in one transaction (two POSTs cannot both pass)."""

        async def work(tx: AsyncClientSession) -> None:
            # Snapshot isolation alone lets two transactions count the same sessions and
            # both insert (write skew); a write to the user's own document first makes
            # a concurrent one conflict and run again after this one commits.
            await self._users.update_one(
                {"_id": session.user_id}, {"$inc": {"uploads": 1}}, upsert=True, session=tx
            )
            open_count = await self._sessions.count_documents(
                {
                    "user_id": session.user_id,
                    "state": State.OPEN.value,
                    "expires_at": {"$gt": session.created_at},
                },
                session=tx,
            )
            used = 0
            cursor = await self._sessions.aggregate(
                [
                    {"$match": {"user_id": session.user_id, "created_at": {"$gte": day_start}}},
                    {"$group": {"_id": None, "bytes": {"$sum": "$size"}}},
                ],
                session=tx,
            )
            async for doc in cursor:
                used = int(doc["bytes"])
            domain.check_new_upload(session.size, limits, open_count=open_count, used_today=used)
            await self._sessions.insert_one(
                {
                    "_id": session.upload_id,
                    "user_id": session.user_id,
                    "file_name": session.file_name,
                    "size": session.size,
                    "received": session.received,
                    "state": session.state.value,
                    "created_at": session.created_at,
                    "expires_at": session.expires_at,
                },
                session=tx,
            )

        await in_transaction(self._client, work)

    async def session(self, upload_id: str) -> UploadSession | None:
        doc = await self._sessions.find_one({"_id": upload_id})
        return None if doc is None else _session(doc)

    async def progress(
        self, upload_id: str, received: int, expires_at: datetime, mime: str | None
    ) -> None:
        fields: dict[str, Any] = {"received": received, "expires_at": expires_at}
        if mime is not None:
            fields["mime"] = mime
        await self._sessions.update_one(
            {"_id": upload_id, "state": State.OPEN.value}, {"$set": fields}
        )

    async def finish(self, upload_id: str, state: State, error: str) -> UploadSession | None:
        doc = await self._sessions.find_one_and_update(
            {"_id": upload_id, "state": State.OPEN.value},
            {"$set": {"state": state.value, "error": error}},
            return_document=ReturnDocument.AFTER,
        )
        return None if doc is None else _session(doc)

    async def complete(self, upload_id: str, media: Media) -> bool:
        """The session COMPLETE and the media stored, in one transaction."""

        async def work(tx: AsyncClientSession) -> bool:
            result = await self._sessions.update_one(
                {"_id": upload_id, "state": State.OPEN.value},
                {
                    "$set": {
                        "state": State.COMPLETE.value,
                        "media_id": media.media_id,
                        "received": media.size,
                        "mime": media.mime,
                    }
                },
                session=tx,
            )
            if result.modified_count == 0:
                return False
            await self._media.insert_one(
                {
                    "_id": media.media_id,
                    "upload_id": media.upload_id,
                    "owner_id": media.owner_id,
                    "file_name": media.file_name,
                    "mime": media.mime,
                    "kind": media.kind.value,
                    "size": media.size,
                    "key": media.key,
                    "thumb_key": media.thumb_key,
                    "width": media.width,
                    "height": media.height,
                    "created_at": media.created_at,
                    "deleted": False,
                },
                session=tx,
            )
            return True

        return await in_transaction(self._client, work)

    async def expired(self, now: datetime, limit: int) -> list[UploadSession]:
        cursor = (
            self._sessions.find({"state": State.OPEN.value, "expires_at": {"$lte": now}})
            .sort("expires_at", ASCENDING)
            .limit(limit)
        )
        return [_session(doc) async for doc in cursor]

    async def media(self, media_id: str) -> Media | None:
        doc = await self._media.find_one({"_id": media_id})
        return None if doc is None else _media(doc)

    async def add_place(self, place: Place) -> None:
        doc: Document = {
            "media_id": place.media_id,
            "message_id": place.message_id,
            "sender_id": place.sender_id,
            "chat": place.chat,
        }
        if place.client_message_id is not None:
            doc["client_message_id"] = place.client_message_id
        try:
            await self._places.insert_one(doc)
        except DuplicateKeyError:
            return

    async def places(self, media_id: str) -> list[Place]:
        return [_place(doc) async for doc in self._places.find({"media_id": media_id})]

    async def remove_places(
        self, message_id: str, sender_id: str, client_message_id: str | None
    ) -> list[Media]:
        """Places removed and orphaned media flagged in one transaction."""
        match: list[Document] = [{"message_id": message_id}]
        if client_message_id is not None:
            match.append({"sender_id": sender_id, "client_message_id": client_message_id})
        query = {"$or": match}

        async def work(tx: AsyncClientSession) -> list[Media]:
            found = self._places.find(query, session=tx)
            media_ids = sorted({doc["media_id"] async for doc in found})
            await self._places.delete_many(query, session=tx)
            gone: list[Media] = []
            for media_id in media_ids:
                if await self._places.find_one({"media_id": media_id}, session=tx) is not None:
                    continue
                doc = await self._media.find_one_and_update(
                    {"_id": media_id},
                    {"$set": {"deleted": True}},
                    return_document=ReturnDocument.AFTER,
                    session=tx,
                )
                if doc is not None:
                    gone.append(_media(doc))
            return gone

        return await in_transaction(self._client, work)
