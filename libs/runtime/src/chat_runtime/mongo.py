"""MongoDB through PyMongo's async API (`AsyncMongoClient`; Motor is deprecated).

What every MongoDB store shares:

- `connect_mongo`: a client whose timeouts fit inside the gateway's ack deadline.
- `require_replica_set`: the stores need multi-document transactions and retryable
  writes, which a standalone server does not have; a worker refuses one at start.
- `in_transaction`: one multi-document change in one `session.with_transaction`,
  bounded in time (pymongo's own retry loop would otherwise run for 120 s).
- `command_deadline` and `unavailable`: the worker runner bounds every command's
  MongoDB work and answers connection failures, elections and aborted transactions
  with `retry`/UNAVAILABLE instead of INTERNAL (`chat_runtime.worker`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from enum import IntEnum
from typing import Any, TypeVar

import pymongo
from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from chat_contracts import ErrorCode, RetryableError

Document = dict[str, Any]
T = TypeVar("T")

# Time budget. The gateway answers a command `retry`/UNAVAILABLE itself when no reply
# came within its ack deadline (CHAT_ACK_TIMEOUT_MS, 5,000 ms by default). A worker's
# reply must beat that, after the NATS hops and the time the command waited for one of
# the worker's `max_in_flight` slots, so the database gets well under it:

#: Whole MongoDB work of one command (client-side operation timeout, CSOT), including
#: server selection, pymongo's retry of a retryable write and `with_transaction`'s retries.
COMMAND_BUDGET_S = 3.5
#: How long to wait for a usable primary: an election takes a few seconds (10 s to
#: notice a dead primary with the default electionTimeoutMillis), so waiting for it
#: would outlive the ack; the client's retry after `RETRY_AFTER_MS` finds the new one.
SERVER_SELECTION_TIMEOUT_MS = 2_000
#: TCP connect (a healthy server answers in milliseconds).
CONNECT_TIMEOUT_MS = 2_000
#: One socket read outside a command's budget (start-up, background sweeps).
SOCKET_TIMEOUT_MS = 4_000
#: `retryAfter` of the ack: about one heartbeat (pymongo's minHeartbeatFrequencyMS is
#: 500 ms), by which the client has usually found the new primary.
RETRY_AFTER_MS = 1_000

#: The client's name in the server's logs, `currentOp` and fail-point filters.
APP_NAME = "chat"

#: Error labels the server or pymongo put on an error that a retry may cure.
RETRY_LABELS = (
    "RetryableWriteError",
    "TransientTransactionError",
    "UnknownTransactionCommitResult",
)


class ServerCode(IntEnum):
    """MongoDB server error codes that mean "not now" rather than "never"."""

    HOST_UNREACHABLE = 6
    HOST_NOT_FOUND = 7
    LOCK_TIMEOUT = 24
    MAX_TIME_MS_EXPIRED = 50
    NETWORK_TIMEOUT = 89
    SHUTDOWN_IN_PROGRESS = 91
    WRITE_CONFLICT = 112
    PRIMARY_STEPPED_DOWN = 189
    TRANSACTION_TOO_OLD = 225
    NO_SUCH_TRANSACTION = 251
    EXCEEDED_TIME_LIMIT = 262
    SOCKET_EXCEPTION = 9001
    NOT_WRITABLE_PRIMARY = 10107
    INTERRUPTED_AT_SHUTDOWN = 11600
    INTERRUPTED_DUE_TO_REPL_STATE_CHANGE = 11602
    NOT_PRIMARY_NO_SECONDARY_OK = 13435
    NOT_PRIMARY_OR_SECONDARY = 13436


_TRANSIENT_CODES = frozenset(int(code) for code in ServerCode)


class MongoSetupError(Exception):
    """The configured MongoDB cannot serve the stores (standalone, unreachable)."""


def connect_mongo(
    url: str, db_name: str
) -> tuple[AsyncMongoClient[Document], AsyncDatabase[Document]]:
    """A client (connects lazily) and the named database.

    `tz_aware` so that datetimes come back as UTC-aware values, like the ones we store.
    The timeouts are the module's constants; options given as keyword arguments win
    over the same options in the URL.
    """
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        url,
        tz_aware=True,
        appname=APP_NAME,
        retryWrites=True,
        serverSelectionTimeoutMS=SERVER_SELECTION_TIMEOUT_MS,
        connectTimeoutMS=CONNECT_TIMEOUT_MS,
        socketTimeoutMS=SOCKET_TIMEOUT_MS,
    )
    return client, client[db_name]


def replica_set_problem(hello: Mapping[str, Any]) -> str | None:
    """Why a server answering `hello` this way cannot serve the stores, or None.

    A replica-set member names its set (`setName`); a mongos (sharded cluster, which
    also has transactions) says `msg: "isdbgrid"`. Anything else is a standalone server.
    """
    if hello.get("setName") or hello.get("msg") == "isdbgrid":
        return None
    return (
        "MongoDB is a standalone server; the chat stores need a replica set"
        " (multi-document transactions, retryable writes). A single-node replica set"
        " is fine for development: start mongod with `--replSet rs0` and run"
        " `rs.initiate()` once (mongosh), then connect with `?replicaSet=rs0`"
        " or `?directConnection=true`"
    )


async def require_replica_set(url: str) -> None:
    """Raise `MongoSetupError` unless the server at `url` is a replica set or a mongos."""
    client, _ = connect_mongo(url, "admin")
    try:
        hello = await client.admin.command("hello")
    except PyMongoError as exc:
        raise MongoSetupError(f"MongoDB did not answer `hello`: {exc}") from None
    finally:
        await client.close()
    problem = replica_set_problem(hello)
    if problem is not None:
        raise MongoSetupError(problem)


async def in_transaction(
    client: AsyncMongoClient[Document],
    work: Callable[[AsyncClientSession], Awaitable[T]],
) -> T:
    """Run `work(session)` as one transaction and return its result.

    Every operation in `work` must pass `session=session`. `with_transaction` runs
    `work` again on a `TransientTransactionError` (a write conflict with a concurrent
    transaction, an election) and retries an unknown commit result, so `work` must only
    read and write the database (no publishing, no other side effect). A `DomainError`
    raised by `work` aborts the transaction: nothing it wrote stays.

    Majority reads and writes: a committed change survives a failover, and the
    snapshot a transaction reads is one no election can roll back. The retries stop at
    the command's deadline (`command_deadline`, CSOT) or, outside a command, after
    `COMMAND_BUDGET_S`; the last error is then a timeout that `unavailable` maps to a
    retry.
    """
    with pymongo.timeout(COMMAND_BUDGET_S):
        async with client.start_session() as session:
            return await session.with_transaction(
                work,
                read_concern=ReadConcern("majority"),
                write_concern=WriteConcern("majority"),
            )


def command_deadline() -> AbstractContextManager[None]:
    """Bound every MongoDB operation inside the block to `COMMAND_BUDGET_S` in total.

    A context variable (pymongo's client-side operation timeout): costs about 1 µs per
    command and nothing for SQLite, which ignores it.
    """
    return pymongo.timeout(COMMAND_BUDGET_S)


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` is a MongoDB failure that the same command may not meet again.

    Connection failures (`AutoReconnect` and its subclasses `NotPrimaryError`,
    `NetworkTimeout`, `ServerSelectionTimeoutError`; `WaitQueueTimeoutError`), timeouts,
    errors labelled retryable or transient (aborted transactions, unknown commit
    results) and server codes of elections, shutdowns and conflicts. A duplicate key
    or a validation failure is not: it would fail the same way again.
    """
    if not isinstance(exc, PyMongoError):
        return False
    if isinstance(exc, ConnectionFailure) or exc.timeout:
        return True
    if any(exc.has_error_label(label) for label in RETRY_LABELS):
        return True
    return isinstance(exc, OperationFailure) and exc.code in _TRANSIENT_CODES


def unavailable(exc: BaseException) -> RetryableError | None:
    """The `retry`/UNAVAILABLE refusal for a transient MongoDB failure, else None."""
    if not is_transient(exc):
        return None
    return RetryableError(
        ErrorCode.UNAVAILABLE,
        f"the database is unavailable ({type(exc).__name__}); try again",
        retry_after_ms=RETRY_AFTER_MS,
    )


__all__ = [
    "APP_NAME",
    "COMMAND_BUDGET_S",
    "Document",
    "MongoSetupError",
    "command_deadline",
    "connect_mongo",
    "in_transaction",
    "is_transient",
    "replica_set_problem",
    "require_replica_set",
    "unavailable",
]
