"""`UserStore` on MongoDB: collections `users`, `blocks`, `statuses`, `devices`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from chat_runtime.mongo import Document, connect_mongo
from chat_users import domain
from chat_users.domain import CustomStatus, Device, Profile, Sighting


class MongoUserStore:
    """Users keyed by user id; blocks by `(blocker, blocked)`; devices by `(user, device)`."""

    def __init__(self, url: str, db_name: str) -> None:
        self._client, db = connect_mongo(url, db_name)
        self._users = db["users"]
        self._blocks = db["blocks"]
        self._statuses = db["statuses"]
        self._devices = db["devices"]
        self._pushes = db["pushes"]

    async def open(self) -> None:
        """The indexes the queries below use (idempotent)."""
        await self._blocks.create_index([("blocked_id", ASCENDING)])
        await self._blocks.create_index([("blocker_id", ASCENDING)])
        await self._statuses.create_index(
            [("expires_at", ASCENDING)],
            partialFilterExpression={"expires_at": {"$type": "date"}},
        )
        await self._devices.create_index([("user_id", ASCENDING), ("registered_at", ASCENDING)])
        await self._pushes.create_index([("message_id", ASCENDING)])
        await self._pushes.create_index([("at", ASCENDING)])

    async def close(self) -> None:
        """Close the client."""
        await self._client.close()

    # --- profiles and last seen

    async def record(self, seen: Sighting) -> None:
        """One upsert; `$max` is `domain.later` applied atomically by the server."""
        fields: dict[str, Any] = {"user_id": seen.user_id}
        if seen.name is not None:
            fields["name"] = seen.name
        if seen.avatar is not None:
            fields["avatar"] = seen.avatar
        update: dict[str, Any] = {"$set": fields}
        if seen.seen_at is not None:
            update["$max"] = {"last_seen_at": seen.seen_at}
        await self._users.update_one({"_id": seen.user_id}, update, upsert=True)

    async def profile(self, user_id: str) -> Profile | None:
        """One stored profile."""
        doc = await self._users.find_one({"_id": user_id})
        if doc is None:
            return None
        return Profile(
            user_id=doc["_id"],
            name=doc.get("name"),
            avatar=doc.get("avatar"),
            last_seen_at=doc.get("last_seen_at"),
        )

    async def last_seen(self, user_ids: Sequence[str]) -> dict[str, datetime]:
        """Last seen of those of `user_ids` that have one (one query, `$in`)."""
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return {}
        cursor = self._users.find(
            {"_id": {"$in": ids}, "last_seen_at": {"$ne": None}},
            projection={"last_seen_at": True},
        )
        return {doc["_id"]: doc["last_seen_at"] async for doc in cursor}

    # --- blocks

    async def block(self, blocker_id: str, blocked_id: str, at: datetime) -> bool:
        """Insert with a composite `_id`; a duplicate means already blocked."""
        try:
            await self._blocks.insert_one(
                {
                    "_id": _key(blocker_id, blocked_id),
                    "blocker_id": blocker_id,
                    "blocked_id": blocked_id,
                    "created_at": at,
                }
            )
        except DuplicateKeyError:
            return False
        return True

    async def unblock(self, blocker_id: str, blocked_id: str) -> bool:
        """Drop the block."""
        result = await self._blocks.delete_one({"_id": _key(blocker_id, blocked_id)})
        return result.deleted_count == 1

    async def blockers(self, user_id: str, other_id: str) -> list[str]:
        """Who of the two has blocked the other."""
        cursor = self._blocks.find(
            {"_id": {"$in": [_key(user_id, other_id), _key(other_id, user_id)]}},
            projection={"blocker_id": True},
        )
        return [doc["blocker_id"] async for doc in cursor]

    async def hidden(self, user_id: str) -> list[str]:
        """Users blocked by or blocking `user_id`."""
        cursor = self._blocks.find(
            {"$or": [{"blocker_id": user_id}, {"blocked_id": user_id}]},
            projection={"blocker_id": True, "blocked_id": True},
        )
        others = {
            doc["blocked_id"] if doc["blocker_id"] == user_id else doc["blocker_id"]
            async for doc in cursor
        }
        return sorted(others)

    # --- custom status

    async def set_status(self, user_id: str, status: CustomStatus | None) -> None:
        """Replace (upsert), or delete for None."""
        if status is None:
            await self._statuses.delete_one({"_id": user_id})
            return
        await self._statuses.replace_one(
            {"_id": user_id},
            {"text": status.text, "emoji": status.emoji, "expires_at": status.expires_at},
            upsert=True,
        )

    async def statuses(self, user_ids: Sequence[str]) -> dict[str, CustomStatus]:
        """Stored statuses of those of `user_ids` that have one."""
        cursor = self._statuses.find({"_id": {"$in": list(dict.fromkeys(user_ids))}})
        return {doc["_id"]: _status(doc) async for doc in cursor}

    async def expired_statuses(self, now: datetime, limit: int) -> list[CustomStatus]:
        """Oldest expiries first."""
        cursor = (
            self._statuses.find({"expires_at": {"$type": "date", "$lte": now}})
            .sort("expires_at", ASCENDING)
            .limit(limit)
        )
        return [_status(doc) async for doc in cursor]

    async def clear_expired(self, status: CustomStatus) -> bool:
        """Delete only the very status read: a newer one stays."""
        if status.expires_at is None:
            return False
        result = await self._statuses.delete_one(
            {"_id": status.user_id, "expires_at": status.expires_at, "text": status.text}
        )
        return result.deleted_count == 1

    # --- push devices

    async def register_device(self, device: Device, keep: int) -> list[Device]:
        """Upsert, then drop the oldest past `keep` (each delete is by key, so a
        concurrent registration can only make the trim drop fewer)."""
        await self._devices.replace_one(
            {"_id": _key(device.user_id, device.device_id)}, _device_doc(device), upsert=True
        )
        dropped = domain.to_drop(await self.devices(device.user_id), keep)
        for old in dropped:
            await self._devices.delete_one(
                {"_id": _key(old.user_id, old.device_id), "registered_at": old.registered_at}
            )
        return dropped

    async def unregister_device(self, user_id: str, device_id: str) -> bool:
        """Forget one device."""
        result = await self._devices.delete_one({"_id": _key(user_id, device_id)})
        return result.deleted_count == 1

    async def devices(self, user_id: str) -> list[Device]:
        """Oldest first."""
        cursor = self._devices.find({"user_id": user_id}).sort(
            [("registered_at", ASCENDING), ("device_id", ASCENDING)]
        )
        return [_device(doc) async for doc in cursor]

    async def push_states(self, message_id: str) -> dict[tuple[str, str], str]:
        """Every push recorded for a message."""
        cursor = self._pushes.find({"message_id": message_id})
        return {(doc["user_id"], doc["device_id"]): doc["state"] async for doc in cursor}

    async def set_push_state(
        self, message_id: str, user_id: str, device_id: str, state: str, at: datetime
    ) -> None:
        """Upsert one record (keyed by message, user and device)."""
        await self._pushes.replace_one(
            {"_id": _key(message_id, user_id, device_id)},
            {
                "message_id": message_id,
                "user_id": user_id,
                "device_id": device_id,
                "state": state,
                "at": at,
            },
            upsert=True,
        )

    async def forget_pushes(self, before: datetime) -> int:
        """Drop old records."""
        result = await self._pushes.delete_many({"at": {"$lt": before}})
        return result.deleted_count

    async def remove_token(self, user_id: str, device_id: str, token: str) -> bool:
        """Only while the device still carries that token."""
        result = await self._devices.delete_one({"_id": _key(user_id, device_id), "token": token})
        return result.deleted_count == 1


def _key(*ids: str) -> str:
    """A composite `_id` (MongoDB refuses arrays there). Ids match the id alphabet
    (`chat_contracts.ids`, no ":"), so the joined key is unambiguous."""
    return ":".join(ids)


def _status(doc: Document) -> CustomStatus:
    return CustomStatus(
        user_id=doc["_id"], text=doc["text"], emoji=doc.get("emoji"), expires_at=doc["expires_at"]
    )


def _device_doc(device: Device) -> Document:
    return {
        "user_id": device.user_id,
        "device_id": device.device_id,
        "platform": device.platform,
        "token": device.token,
        "registered_at": device.registered_at,
        "provider": device.provider,
        "previews": device.previews,
    }


def _device(doc: Document) -> Device:
    return Device(
        user_id=doc["user_id"],
        device_id=doc["device_id"],
        platform=doc["platform"],
        token=doc["token"],
        registered_at=doc["registered_at"],
        provider=doc.get("provider", "fcm"),
        previews=doc.get("previews", True),
    )
