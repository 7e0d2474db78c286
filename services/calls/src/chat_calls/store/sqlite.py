"""Call records in an embedded SQLite file."""

from __future__ import annotations

import sqlite3

import msgspec

from chat_contracts.server import CallRecord
from chat_runtime.sqlite import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    call_id   TEXT PRIMARY KEY,
    caller_id TEXT NOT NULL,
    callee_id TEXT NOT NULL,
    reason    TEXT,
    record    BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS calls_by_caller ON calls (caller_id, call_id);
CREATE INDEX IF NOT EXISTS calls_by_callee ON calls (callee_id, call_id);
"""

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(CallRecord).decode
#: Call ids are time-ordered (`TimeOrderedIds`), so id order is start order; a cursor
#: above every id starts at the newest.
_TOP = "\U0010ffff"


class SqliteCallStore(SqliteStore):
    """One row per call; the record itself as msgpack, the columns history filters on."""

    SCHEMA = SCHEMA

    async def save(self, record: CallRecord) -> None:
        """Insert or replace the record of `record.call_id`."""
        row = (
            record.call_id,
            record.caller_id,
            record.callee_id,
            record.reason,
            _encode(record),
        )

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO calls (call_id, caller_id, callee_id, reason, record)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (call_id) DO UPDATE SET"
                " reason = excluded.reason, record = excluded.record",
                row,
            )

        await self._db.write(work)

    async def history(
        self, user_id: str, before: str | None, limit: int
    ) -> tuple[list[CallRecord], bool]:
        """Two index range scans (as caller, as callee) merged by id, newest first."""
        cursor = before or _TOP

        def work(conn: sqlite3.Connection) -> list[bytes]:
            rows = conn.execute(
                "SELECT call_id, record FROM ("
                " SELECT call_id, record FROM calls WHERE caller_id = ? AND call_id < ?"
                " UNION ALL"
                " SELECT call_id, record FROM calls WHERE callee_id = ? AND call_id < ?"
                "  AND caller_id != ? AND (reason IS NULL OR reason != 'blocked')"
                ") ORDER BY call_id DESC LIMIT ?",
                (user_id, cursor, user_id, cursor, user_id, limit + 1),
            ).fetchall()
            return [row["record"] for row in rows]

        raws = await self._db.read(work)
        return [_decode(raw) for raw in raws[:limit]], len(raws) > limit
