"""Group commit: concurrent writes share a transaction but fail alone."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from chat_runtime.sqlite import SqliteDatabase

SCHEMA = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)"


def insert(key: str, value: int, fail: bool = False):  # type: ignore[no-untyped-def]
    def work(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO t VALUES (?, ?)", (key, value))
        if fail:
            raise ValueError(f"refused {key}")
        return key

    return work


async def test_concurrent_writes_commit_together_and_a_failure_is_rolled_back_alone(
    tmp_path: Path,
) -> None:
    db = SqliteDatabase(tmp_path / "t.sqlite3", SCHEMA)
    await db.open()
    try:
        results = await asyncio.gather(
            *(db.write(insert(f"k{i}", i, fail=(i == 3))) for i in range(10)),
            return_exceptions=True,
        )
        assert [r if isinstance(r, str) else type(r).__name__ for r in results] == [
            "k0", "k1", "k2", "ValueError", "k4", "k5", "k6", "k7", "k8", "k9",
        ]  # fmt: skip
        rows = await db.read(lambda c: [r[0] for r in c.execute("SELECT k FROM t ORDER BY v")])
        assert rows == [f"k{i}" for i in range(10) if i != 3]
        # A constraint violation is the failing write's own business too.
        with pytest.raises(sqlite3.IntegrityError):
            await db.write(insert("k0", 99))
        assert await db.read(lambda c: c.execute("SELECT v FROM t WHERE k='k0'").fetchone()[0]) == 0
    finally:
        await db.close()


async def test_committed_writes_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite3"
    db = SqliteDatabase(path, SCHEMA)
    await db.open()
    await asyncio.gather(*(db.write(insert(f"k{i}", i)) for i in range(50)))
    await db.close()
    again = SqliteDatabase(path, SCHEMA)
    await again.open()
    try:
        assert await again.read(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]) == 50
    finally:
        await again.close()
