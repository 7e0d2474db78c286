"""User repository: the Protocol the handlers use, on SQLite and on MongoDB."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from chat_runtime.clock import iso, parse_iso
from chat_runtime.mongo import Document, connect_mongo
from chat_runtime.sqlite import SqliteStore
from chat_users import domain
from chat_users.domain import Profile, Sighting


class UserStore(Protocol):
    """What the user handlers need from storage."""

    async def open(self) -> None:
        """Connect and create the schema or indexes (idempotent)."""
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...

    async def record(self, seen: Sighting) -> None:
        """Create or refresh a profile; last seen never moves backwards."""
        ...

    async def profile(self, user_id: str) -> Profile | None:
        """One stored profile."""
        ...

    async def last_seen(self, user_ids: Sequence[str]) -> dict[str, datetime]:
        """Last seen of those of `user_ids` that have one."""
        ...


# --- SQLite -----------------------------------------------------------------------

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id      TEXT PRIMARY KEY,
    name         TEXT,
    avatar       TEXT,
    last_seen_at TEXT
) WITHOUT ROWID;
"""


def _sql_profile(conn: sqlite3.Connection, user_id: str) -> Profile | None:
    row = conn.execute(
        "SELECT user_id, name, avatar, last_seen_at FROM users WHERE user_id = ?", (user_id,)
    ).fetchone()
    if row is None:
        return None
    seen = row["last_seen_at"]
    return Profile(
        user_id=row["user_id"],
        name=row["name"],
        avatar=row["avatar"],
        last_seen_at=None if seen is None else parse_iso(seen),
    )


class SqliteUserStore(SqliteStore):
    """Users in an embedded SQLite file."""

    SCHEMA = SCHEMA

    async def record(self, seen: Sighting) -> None:
        """Read, merge (`domain.merge`) and write back in one transaction."""

        def work(conn: sqlite3.Connection) -> None:
            merged = domain.merge(_sql_profile(conn, seen.user_id), seen)
            conn.execute(
                "INSERT INTO users (user_id, name, avatar, last_seen_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (user_id) DO UPDATE SET name = excluded.name,"
                " avatar = excluded.avatar, last_seen_at = excluded.last_seen_at",
                (
                    merged.user_id,
                    merged.name,
                    merged.avatar,
                    None if merged.last_seen_at is None else iso(merged.last_seen_at),
                ),
            )

        await self._db.write(work)

    async def profile(self, user_id: str) -> Profile | None:
        """One stored profile."""
        return await self._db.read(lambda conn: _sql_profile(conn, user_id))

    async def last_seen(self, user_ids: Sequence[str]) -> dict[str, datetime]:
        """Last seen of those of `user_ids` that have one (one query, `IN (...)`)."""
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return {}

        def work(conn: sqlite3.Connection) -> dict[str, datetime]:
            marks = ", ".join("?" * len(ids))
            rows = conn.execute(
                f"SELECT user_id, last_seen_at FROM users"
                f" WHERE user_id IN ({marks}) AND last_seen_at IS NOT NULL",
                ids,
            ).fetchall()
            return {row["user_id"]: parse_iso(row["last_seen_at"]) for row in rows}

        return await self._db.read(work)


# --- MongoDB ----------------------------------------------------------------------


class MongoUserStore:
    """Users in MongoDB: one document per user in `users`, keyed by the user id."""

    def __init__(self, url: str, db_name: str) -> None:
        self._client, db = connect_mongo(url, db_name)
        self._users = db["users"]

    async def open(self) -> None:
        """Nothing to create: every lookup is by `_id`, which MongoDB always indexes."""

    async def close(self) -> None:
        """Close the client."""
        await self._client.close()

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
        return None if doc is None else _mongo_profile(doc)

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


def _mongo_profile(doc: Document) -> Profile:
    return Profile(
        user_id=doc["_id"],
        name=doc.get("name"),
        avatar=doc.get("avatar"),
        last_seen_at=doc.get("last_seen_at"),
    )
