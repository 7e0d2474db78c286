"""SQLite, the embedded store, used without blocking the event loop.

Every statement runs on one dedicated thread per database (sqlite3 connections are not
thread-safe, and one writer is SQLite's model anyway). Stores put each command's
statements into one `read` or `write` call, so a command costs one thread hop.

Under load, writes are group-committed: all writes queued while the thread was busy
run in one `BEGIN IMMEDIATE` transaction, each inside its own SAVEPOINT (a write that
raises is rolled back alone and its caller gets the exception), with one COMMIT and
one wake-up of the event loop for the whole batch. The commit and the thread hops
were the messages worker's largest costs at 1,000 messages/s (py-spy). A caller's
future resolves only after the COMMIT: nothing is published before it is durable.
Several processes may share a file (two workers of one service): writes take the lock
with `BEGIN IMMEDIATE`, retried with short sleeps (`begin_immediate`) rather than
SQLite's own busy handler, whose 1-2-5-10-...-100 ms steps put 100 ms outliers into
p99.9 with two messages workers.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")

#: Statements other than BEGIN IMMEDIATE wait this long on a lock (WAL readers rarely do).
BUSY_TIMEOUT_MS = 10_000
#: How long a writer keeps trying to take the write lock before giving up (s).
LOCK_WAIT_S = 10.0
#: Sleeps between attempts: start small (a batch commits in well under 1 ms), cap at 5 ms.
_BACKOFF_S = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005)


class SqliteDatabase:
    """One SQLite file, one thread, async `run`."""

    def __init__(self, path: str | Path, schema: str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None
        self._schema = schema
        self._lock = threading.Lock()
        self._queue: list[_Job[object]] = []
        self._draining = False

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
        return await self._submit(fn, write=False)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` atomically (its own SAVEPOINT in a group commit); if it raises,
        nothing it did is kept and the exception is re-raised here."""
        return await self._submit(fn, write=True)

    async def _submit(self, fn: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        self._require()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            self._queue.append(_Job(fn, future, write, loop))  # type: ignore[arg-type]
            start = not self._draining
            self._draining = True
        if start:
            # After this loop turn: every write queued in it (a command batch's items,
            # `chat_runtime.batch`) joins the same transaction.
            loop.call_soon(self._executor.submit, self._drain)
        return await future

    def _drain(self) -> None:
        """Database thread: run batches until the queue is empty."""
        conn = self._require()
        while True:
            with self._lock:
                batch, self._queue = self._queue, []
                if not batch:
                    self._draining = False
                    return
            outcomes = _run_batch(conn, batch)
            loop = batch[0].loop
            loop.call_soon_threadsafe(_resolve, outcomes)

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


@dataclass(slots=True)
class _Job(Generic[T]):
    fn: Callable[[sqlite3.Connection], T]
    future: asyncio.Future[T]
    write: bool
    loop: asyncio.AbstractEventLoop


_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]


def _run_batch(conn: sqlite3.Connection, batch: list[_Job[Any]]) -> list[_Outcome]:
    outcomes: list[_Outcome] = []
    writes = [job for job in batch if job.write]
    for job in batch:
        if not job.write:
            try:
                outcomes.append((job.future, job.fn(conn), None))
            except Exception as exc:  # noqa: BLE001 - handed to the awaiting caller
                outcomes.append((job.future, None, exc))
    if not writes:
        return outcomes
    done: list[_Outcome] = []
    try:
        begin_immediate(conn)
        for job in writes:
            conn.execute("SAVEPOINT job")
            try:
                result = job.fn(conn)
            except Exception as exc:  # noqa: BLE001 - handed to the awaiting caller
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                done.append((job.future, None, exc))
            else:
                conn.execute("RELEASE job")
                done.append((job.future, result, None))
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        # The batch as a whole failed (lock timeout, disk): nothing of it is kept.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        return outcomes + [(job.future, None, exc) for job in writes]
    return outcomes + done


def _resolve(outcomes: list[_Outcome]) -> None:
    for future, result, exc in outcomes:
        if future.cancelled():
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)


def begin_immediate(conn: sqlite3.Connection) -> None:
    """Take the write lock, retrying briefly while another process holds it."""
    deadline = time.monotonic() + LOCK_WAIT_S
    attempt = 0
    while True:
        try:
            conn.execute("PRAGMA busy_timeout=0")
            try:
                conn.execute("BEGIN IMMEDIATE")
            finally:
                conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(_BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)])
        attempt += 1


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    begin_immediate(conn)
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
