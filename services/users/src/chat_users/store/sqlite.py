"""`UserStore` on one SQLite file."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime

from chat_runtime.clock import iso, parse_iso
from chat_runtime.sqlite import SqliteStore
from chat_users import domain
from chat_users.domain import CustomStatus, Device, Profile, Sighting

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id      TEXT PRIMARY KEY,
    name         TEXT,
    avatar       TEXT,
    last_seen_at TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks (
    blocker_id TEXT NOT NULL,
    blocked_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blocks_blocked ON blocks (blocked_id);
CREATE TABLE IF NOT EXISTS statuses (
    user_id    TEXT PRIMARY KEY,
    text       TEXT NOT NULL,
    emoji      TEXT,
    expires_at TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS statuses_expiry ON statuses (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS devices (
    user_id       TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    platform      TEXT NOT NULL,
    token         TEXT NOT NULL,
    registered_at TEXT NOT NULL,
    provider      TEXT NOT NULL,
    previews      INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pushes (
    message_id TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    state      TEXT NOT NULL,
    at         TEXT NOT NULL,
    PRIMARY KEY (message_id, user_id, device_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pushes_at ON pushes (at)
"""


def _ids(values: Sequence[str]) -> str:
    # One JSON parameter (`json_each`): no statement per id, no bound-parameter limit.
    return json.dumps(list(dict.fromkeys(values)))


def _profile(conn: sqlite3.Connection, user_id: str) -> Profile | None:
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


def _status(row: sqlite3.Row) -> CustomStatus:
    expires = row["expires_at"]
    return CustomStatus(
        user_id=row["user_id"],
        text=row["text"],
        emoji=row["emoji"],
        expires_at=None if expires is None else parse_iso(expires),
    )


def _device(row: sqlite3.Row) -> Device:
    return Device(
        user_id=row["user_id"],
        device_id=row["device_id"],
        platform=row["platform"],
        token=row["token"],
        registered_at=parse_iso(row["registered_at"]),
        provider=row["provider"],
        previews=bool(row["previews"]),
    )


def _devices(conn: sqlite3.Connection, user_id: str) -> list[Device]:
    rows = conn.execute(
        "SELECT * FROM devices WHERE user_id = ? ORDER BY registered_at, device_id", (user_id,)
    ).fetchall()
    return [_device(row) for row in rows]


class SqliteUserStore(SqliteStore):
    """Users, blocks, statuses and devices in an embedded SQLite file."""

    SCHEMA = SCHEMA

    async def record(self, seen: Sighting) -> None:
        """Read, merge (`domain.merge`) and write back in one transaction."""

        def work(conn: sqlite3.Connection) -> None:
            merged = domain.merge(_profile(conn, seen.user_id), seen)
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
        return await self._db.read(lambda conn: _profile(conn, user_id))

    async def last_seen(self, user_ids: Sequence[str]) -> dict[str, datetime]:
        """Last seen of those of `user_ids` that have one (one query)."""
        if not user_ids:
            return {}

        def work(conn: sqlite3.Connection) -> dict[str, datetime]:
            rows = conn.execute(
                "SELECT user_id, last_seen_at FROM users WHERE user_id IN"
                " (SELECT value FROM json_each(?)) AND last_seen_at IS NOT NULL",
                (_ids(user_ids),),
            ).fetchall()
            return {row["user_id"]: parse_iso(row["last_seen_at"]) for row in rows}

        return await self._db.read(work)

    # --- blocks

    async def block(self, blocker_id: str, blocked_id: str, at: datetime) -> bool:
        """`INSERT OR IGNORE`: a repeated block changes nothing."""

        def work(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT OR IGNORE INTO blocks (blocker_id, blocked_id, created_at)"
                " VALUES (?, ?, ?)",
                (blocker_id, blocked_id, iso(at)),
            )
            return cur.rowcount == 1

        return await self._db.write(work)

    async def unblock(self, blocker_id: str, blocked_id: str) -> bool:
        """Drop the block."""

        def work(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM blocks WHERE blocker_id = ? AND blocked_id = ?",
                (blocker_id, blocked_id),
            )
            return cur.rowcount == 1

        return await self._db.write(work)

    async def blockers(self, user_id: str, other_id: str) -> list[str]:
        """Who of the two has blocked the other."""

        def work(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT blocker_id FROM blocks WHERE (blocker_id = ? AND blocked_id = ?)"
                " OR (blocker_id = ? AND blocked_id = ?)",
                (user_id, other_id, other_id, user_id),
            ).fetchall()
            return [row["blocker_id"] for row in rows]

        return await self._db.read(work)

    async def hidden(self, user_id: str) -> list[str]:
        """Users blocked by or blocking `user_id` (two index lookups)."""

        def work(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT blocked_id AS other FROM blocks WHERE blocker_id = ?"
                " UNION SELECT blocker_id FROM blocks WHERE blocked_id = ?",
                (user_id, user_id),
            ).fetchall()
            return sorted(row["other"] for row in rows)

        return await self._db.read(work)

    # --- custom status

    async def set_status(self, user_id: str, status: CustomStatus | None) -> None:
        """Upsert, or delete for None."""

        def work(conn: sqlite3.Connection) -> None:
            if status is None:
                conn.execute("DELETE FROM statuses WHERE user_id = ?", (user_id,))
                return
            conn.execute(
                "INSERT INTO statuses (user_id, text, emoji, expires_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (user_id) DO UPDATE SET text = excluded.text,"
                " emoji = excluded.emoji, expires_at = excluded.expires_at",
                (
                    user_id,
                    status.text,
                    status.emoji,
                    None if status.expires_at is None else iso(status.expires_at),
                ),
            )

        await self._db.write(work)

    async def statuses(self, user_ids: Sequence[str]) -> dict[str, CustomStatus]:
        """Stored statuses of those of `user_ids` that have one."""
        if not user_ids:
            return {}

        def work(conn: sqlite3.Connection) -> dict[str, CustomStatus]:
            rows = conn.execute(
                "SELECT * FROM statuses WHERE user_id IN (SELECT value FROM json_each(?))",
                (_ids(user_ids),),
            ).fetchall()
            return {row["user_id"]: _status(row) for row in rows}

        return await self._db.read(work)

    async def expired_statuses(self, now: datetime, limit: int) -> list[CustomStatus]:
        """Oldest expiries first (the partial index on `expires_at`).

        Stored times are `iso()` strings of one fixed width, so text order is time order.
        """

        def work(conn: sqlite3.Connection) -> list[CustomStatus]:
            rows = conn.execute(
                "SELECT * FROM statuses WHERE expires_at IS NOT NULL AND expires_at <= ?"
                " ORDER BY expires_at LIMIT ?",
                (iso(now), limit),
            ).fetchall()
            return [_status(row) for row in rows]

        return await self._db.read(work)

    async def clear_expired(self, status: CustomStatus) -> bool:
        """Delete only the very status read (same expiry and text): a newer one stays."""
        if status.expires_at is None:
            return False
        expires = iso(status.expires_at)

        def work(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM statuses WHERE user_id = ? AND expires_at = ? AND text = ?",
                (status.user_id, expires, status.text),
            )
            return cur.rowcount == 1

        return await self._db.write(work)

    # --- push devices

    async def register_device(self, device: Device, keep: int) -> list[Device]:
        """Upsert and trim in one transaction."""

        def work(conn: sqlite3.Connection) -> list[Device]:
            conn.execute(
                "INSERT INTO devices (user_id, device_id, platform, token, registered_at,"
                " provider, previews) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (user_id, device_id) DO UPDATE SET"
                " platform = excluded.platform, token = excluded.token,"
                " registered_at = excluded.registered_at, provider = excluded.provider,"
                " previews = excluded.previews",
                (
                    device.user_id,
                    device.device_id,
                    device.platform,
                    device.token,
                    iso(device.registered_at),
                    device.provider,
                    int(device.previews),
                ),
            )
            dropped = domain.to_drop(_devices(conn, device.user_id), keep)
            conn.executemany(
                "DELETE FROM devices WHERE user_id = ? AND device_id = ?",
                [(d.user_id, d.device_id) for d in dropped],
            )
            return dropped

        return await self._db.write(work)

    async def unregister_device(self, user_id: str, device_id: str) -> bool:
        """Forget one device."""

        def work(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM devices WHERE user_id = ? AND device_id = ?", (user_id, device_id)
            )
            return cur.rowcount == 1

        return await self._db.write(work)

    async def devices(self, user_id: str) -> list[Device]:
        """Oldest first."""
        return await self._db.read(lambda conn: _devices(conn, user_id))

    async def push_states(self, message_id: str) -> dict[tuple[str, str], str]:
        """Every push recorded for a message."""

        def work(conn: sqlite3.Connection) -> dict[tuple[str, str], str]:
            rows = conn.execute(
                "SELECT user_id, device_id, state FROM pushes WHERE message_id = ?",
                (message_id,),
            ).fetchall()
            return {(row["user_id"], row["device_id"]): row["state"] for row in rows}

        return await self._db.read(work)

    async def set_push_state(
        self, message_id: str, user_id: str, device_id: str, state: str, at: datetime
    ) -> None:
        """Upsert one record."""

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO pushes (message_id, user_id, device_id, state, at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (message_id, user_id, device_id)"
                " DO UPDATE SET state = excluded.state, at = excluded.at",
                (message_id, user_id, device_id, state, iso(at)),
            )

        await self._db.write(work)

    async def forget_pushes(self, before: datetime) -> int:
        """Drop old records."""

        def work(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM pushes WHERE at < ?", (iso(before),)).rowcount

        return await self._db.write(work)

    async def remove_token(self, user_id: str, device_id: str, token: str) -> bool:
        """Only while the device still carries that token (a re-registration wins)."""

        def work(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM devices WHERE user_id = ? AND device_id = ? AND token = ?",
                (user_id, device_id, token),
            )
            return cur.rowcount == 1

        return await self._db.write(work)
