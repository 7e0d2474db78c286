"""The media repository in an embedded SQLite file."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from chat_media import domain
from chat_media.domain import Kind, Limits, Media, Place, State, UploadSession
from chat_runtime.clock import iso, parse_iso
from chat_runtime.sqlite import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    upload_id  TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    file_name  TEXT NOT NULL,
    size       INTEGER NOT NULL,
    received   INTEGER NOT NULL,
    state      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    mime       TEXT,
    media_id   TEXT,
    error      TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id, created_at);
CREATE INDEX IF NOT EXISTS sessions_open ON sessions (state, expires_at);
CREATE TABLE IF NOT EXISTS media (
    media_id   TEXT PRIMARY KEY,
    upload_id  TEXT NOT NULL,
    owner_id   TEXT NOT NULL,
    file_name  TEXT NOT NULL,
    mime       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    size       INTEGER NOT NULL,
    key        TEXT NOT NULL,
    thumb_key  TEXT,
    width      INTEGER,
    height     INTEGER,
    created_at TEXT NOT NULL,
    deleted    INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS places (
    media_id          TEXT NOT NULL,
    message_id        TEXT NOT NULL,
    sender_id         TEXT NOT NULL,
    chat              TEXT NOT NULL,
    client_message_id TEXT,
    PRIMARY KEY (media_id, message_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS places_message ON places (message_id);
CREATE UNIQUE INDEX IF NOT EXISTS places_retry
    ON places (media_id, sender_id, client_message_id) WHERE client_message_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS places_cmid ON places (sender_id, client_message_id);
"""


def _session(row: sqlite3.Row) -> UploadSession:
    return UploadSession(
        upload_id=row["upload_id"],
        user_id=row["user_id"],
        file_name=row["file_name"],
        size=row["size"],
        received=row["received"],
        state=State(row["state"]),
        created_at=parse_iso(row["created_at"]),
        expires_at=parse_iso(row["expires_at"]),
        mime=row["mime"],
        media_id=row["media_id"],
        error=row["error"],
    )


def _media(row: sqlite3.Row) -> Media:
    return Media(
        media_id=row["media_id"],
        upload_id=row["upload_id"],
        owner_id=row["owner_id"],
        file_name=row["file_name"],
        mime=row["mime"],
        kind=Kind(row["kind"]),
        size=row["size"],
        key=row["key"],
        thumb_key=row["thumb_key"],
        width=row["width"],
        height=row["height"],
        created_at=parse_iso(row["created_at"]),
        deleted=bool(row["deleted"]),
    )


def _place(row: sqlite3.Row) -> Place:
    return Place(
        media_id=row["media_id"],
        message_id=row["message_id"],
        sender_id=row["sender_id"],
        chat=row["chat"],
        client_message_id=row["client_message_id"],
    )


class SqliteMediaStore(SqliteStore):
    """Sessions, media and places in one SQLite file."""

    SCHEMA = SCHEMA

    async def open_session(
        self, session: UploadSession, limits: Limits, day_start: datetime
    ) -> None:
        """Count, decide and insert in one transaction (two POSTs cannot both pass)."""

        def work(conn: sqlite3.Connection) -> None:
            open_count = conn.execute(
                "SELECT COUNT(*) FROM sessions WHERE user_id = ? AND state = ? AND expires_at > ?",
                (session.user_id, State.OPEN.value, iso(session.created_at)),
            ).fetchone()[0]
            used = conn.execute(
                "SELECT COALESCE(SUM(size), 0) FROM sessions WHERE user_id = ? AND created_at >= ?",
                (session.user_id, iso(day_start)),
            ).fetchone()[0]
            domain.check_new_upload(session.size, limits, open_count=open_count, used_today=used)
            conn.execute(
                "INSERT INTO sessions (upload_id, user_id, file_name, size, received, state,"
                " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session.upload_id,
                    session.user_id,
                    session.file_name,
                    session.size,
                    session.received,
                    session.state.value,
                    iso(session.created_at),
                    iso(session.expires_at),
                ),
            )

        await self._db.write(work)

    async def session(self, upload_id: str) -> UploadSession | None:
        def work(conn: sqlite3.Connection) -> UploadSession | None:
            row = conn.execute(
                "SELECT * FROM sessions WHERE upload_id = ?", (upload_id,)
            ).fetchone()
            return None if row is None else _session(row)

        return await self._db.read(work)

    async def progress(
        self, upload_id: str, received: int, expires_at: datetime, mime: str | None
    ) -> None:
        await self._db.write(
            lambda conn: conn.execute(
                "UPDATE sessions SET received = ?, expires_at = ?, mime = COALESCE(?, mime)"
                " WHERE upload_id = ? AND state = ?",
                (received, iso(expires_at), mime, upload_id, State.OPEN.value),
            )
        )

    async def finish(self, upload_id: str, state: State, error: str) -> UploadSession | None:
        def work(conn: sqlite3.Connection) -> UploadSession | None:
            row = conn.execute(
                "UPDATE sessions SET state = ?, error = ? WHERE upload_id = ? AND state = ?"
                " RETURNING *",
                (state.value, error, upload_id, State.OPEN.value),
            ).fetchone()
            return None if row is None else _session(row)

        return await self._db.write(work)

    async def complete(self, upload_id: str, media: Media) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            changed = conn.execute(
                "UPDATE sessions SET state = ?, media_id = ?, received = size, mime = ?"
                " WHERE upload_id = ? AND state = ?",
                (State.COMPLETE.value, media.media_id, media.mime, upload_id, State.OPEN.value),
            ).rowcount
            if not changed:
                return False
            conn.execute(
                "INSERT INTO media (media_id, upload_id, owner_id, file_name, mime, kind, size,"
                " key, thumb_key, width, height, created_at, deleted)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
                (
                    media.media_id,
                    media.upload_id,
                    media.owner_id,
                    media.file_name,
                    media.mime,
                    media.kind.value,
                    media.size,
                    media.key,
                    media.thumb_key,
                    media.width,
                    media.height,
                    iso(media.created_at),
                ),
            )
            return True

        return await self._db.write(work)

    async def expired(self, now: datetime, limit: int) -> list[UploadSession]:
        def work(conn: sqlite3.Connection) -> list[UploadSession]:
            rows = conn.execute(
                "SELECT * FROM sessions WHERE state = ? AND expires_at <= ?"
                " ORDER BY expires_at LIMIT ?",
                (State.OPEN.value, iso(now), limit),
            ).fetchall()
            return [_session(r) for r in rows]

        return await self._db.read(work)

    async def media(self, media_id: str) -> Media | None:
        def work(conn: sqlite3.Connection) -> Media | None:
            row = conn.execute("SELECT * FROM media WHERE media_id = ?", (media_id,)).fetchone()
            return None if row is None else _media(row)

        return await self._db.read(work)

    async def add_place(self, place: Place) -> None:
        await self._db.write(
            lambda conn: conn.execute(
                "INSERT OR IGNORE INTO places"
                " (media_id, message_id, sender_id, chat, client_message_id)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    place.media_id,
                    place.message_id,
                    place.sender_id,
                    place.chat,
                    place.client_message_id,
                ),
            )
        )

    async def places(self, media_id: str) -> list[Place]:
        def work(conn: sqlite3.Connection) -> list[Place]:
            rows = conn.execute("SELECT * FROM places WHERE media_id = ?", (media_id,)).fetchall()
            return [_place(r) for r in rows]

        return await self._db.read(work)

    async def remove_places(
        self, message_id: str, sender_id: str, client_message_id: str | None
    ) -> list[Media]:
        def work(conn: sqlite3.Connection) -> list[Media]:
            rows = conn.execute(
                "DELETE FROM places WHERE message_id = ?"
                " OR (sender_id = ? AND client_message_id IS NOT NULL AND client_message_id = ?)"
                " RETURNING media_id",
                (message_id, sender_id, client_message_id),
            ).fetchall()
            gone: list[Media] = []
            for media_id in sorted({r["media_id"] for r in rows}):
                left = conn.execute(
                    "SELECT 1 FROM places WHERE media_id = ? LIMIT 1", (media_id,)
                ).fetchone()
                if left is not None:
                    continue
                row = conn.execute(
                    "UPDATE media SET deleted = 1 WHERE media_id = ? RETURNING *", (media_id,)
                ).fetchone()
                if row is not None:
                    gone.append(_media(row))
            return gone

        return await self._db.write(work)
