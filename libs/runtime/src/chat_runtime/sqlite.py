"""SQLite, the embedded store, used without blocking the event loop.

Every statement runs on one dedicated thread per database (sqlite3 connections are not
thread-safe, and one writer is SQLite's model anyway). WAL with `synchronous=NORMAL`
commits in ~22 µs p50 on the reference machine (ANCHORS.md); the thread hop costs more
than the commit, so stores batch each command's statements into one `run` call.
Several processes may share a file (two workers of one service): writes take the lock
with `BEGIN IMMEDIATE` and wait up to `busy_timeout` for it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

BUSY_TIMEOUT_MS = 10_000


class SqliteDatabase:
    """One SQLite file, one thread, async `run`."""

    def __init__(self, path: str | Path, schema: str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None
        self._schema = schema

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        with _transaction(conn):
            for stmt in _statements(self._schema):
                conn.execute(stmt)
        return conn

    async def open(self) -> None:
        """Open the file and create the schema (idempotent)."""
        self._conn = await self._call(self._open)

    async def _call(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` on the database thread (no transaction: one consistent statement)."""
        conn = self._require()
        return await self._call(lambda: fn(conn))

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` in one `BEGIN IMMEDIATE` transaction; roll back if it raises."""
        conn = self._require()

        def work() -> T:
            with _transaction(conn):
                return fn(conn)

        return await self._call(work)

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("SqliteDatabase.open() was not awaited")
        return self._conn

    async def close(self) -> None:
        """Close the connection and the thread."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._call(conn.close)
        self._executor.shutdown(wait=True)


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _statements(schema: str) -> Iterator[str]:
    for stmt in schema.split(";"):
        if stmt.strip():
            yield stmt


class SqliteStore:
    """Base of the SQLite repositories: owns the database and its open/close."""

    #: The repository's schema (CREATE ... IF NOT EXISTS statements).
    SCHEMA = ""

    def __init__(self, path: str | Path) -> None:
        self._db = SqliteDatabase(path, self.SCHEMA)

    async def open(self) -> None:
        """Open the file and create the schema."""
        await self._db.open()

    async def close(self) -> None:
        """Close the file and its thread."""
        await self._db.close()
