"""MongoDB plumbing: which failures become `retry`/UNAVAILABLE, the replica-set check,
and a command against a MongoDB that is gone answering within the ack deadline.

The exceptions are pymongo's own classes, built the way pymongo builds them from a
server reply; the dead-server cases use a real client against a port nobody listens on.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import msgspec
import pytest
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    ConfigurationError,
    DuplicateKeyError,
    ExecutionTimeout,
    NetworkTimeout,
    NotPrimaryError,
    OperationFailure,
    ServerSelectionTimeoutError,
    WaitQueueTimeoutError,
    WriteConcernError,
    WTimeoutError,
)

from chat_contracts import ErrorCode
from chat_contracts.bus import Actor, Command, MembersQuery
from chat_runtime import mongo
from chat_runtime.bus import encode
from chat_runtime.mongo import (
    MongoSetupError,
    ServerCode,
    connect_mongo,
    in_transaction,
    replica_set_problem,
    require_replica_set,
    unavailable,
)
from chat_runtime.worker import Router

#: The gateway's default ack deadline (CHAT_ACK_TIMEOUT_MS).
ACK_DEADLINE_S = 5.0
ALICE = Actor(user_id="alice", name="Alice")


def server_error(
    code: int, message: str = "failed", labels: tuple[str, ...] = ()
) -> OperationFailure:
    """An `OperationFailure` as pymongo raises it for a server reply `{ok: 0, code, ...}`."""
    details = {"ok": 0, "errmsg": message, "code": code, "errorLabels": list(labels)}
    return OperationFailure(message, code, details)


TRANSIENT = [
    pytest.param(AutoReconnect("connection reset by peer"), id="AutoReconnect"),
    pytest.param(NotPrimaryError("not primary", {"code": 10107}), id="NotPrimaryError"),
    pytest.param(
        ServerSelectionTimeoutError("No primary available for writes"),
        id="ServerSelectionTimeoutError",
    ),
    pytest.param(NetworkTimeout("timed out"), id="NetworkTimeout"),
    pytest.param(WaitQueueTimeoutError("pool exhausted"), id="WaitQueueTimeoutError"),
    pytest.param(ExecutionTimeout("operation exceeded time limit", 50), id="ExecutionTimeout"),
    pytest.param(
        WTimeoutError("waiting for replication timed out", 64, {"wtimeout": True}),
        id="WTimeoutError",
    ),
    pytest.param(
        server_error(ServerCode.NOT_WRITABLE_PRIMARY, "not primary"), id="NotWritablePrimary"
    ),
    pytest.param(
        server_error(ServerCode.INTERRUPTED_DUE_TO_REPL_STATE_CHANGE), id="ReplStateChange"
    ),
    pytest.param(server_error(ServerCode.PRIMARY_STEPPED_DOWN), id="PrimarySteppedDown"),
    pytest.param(server_error(ServerCode.SHUTDOWN_IN_PROGRESS), id="ShutdownInProgress"),
    pytest.param(
        server_error(ServerCode.WRITE_CONFLICT, "write conflict", ("TransientTransactionError",)),
        id="WriteConflict",
    ),
    pytest.param(
        server_error(ServerCode.NO_SUCH_TRANSACTION, "aborted", ("TransientTransactionError",)),
        id="NoSuchTransaction",
    ),
    # A label is enough, whatever the code.
    pytest.param(
        server_error(1, "commit result unknown", ("UnknownTransactionCommitResult",)),
        id="UnknownTransactionCommitResult",
    ),
    pytest.param(
        WriteConcernError("no primary", 2, {"errorLabels": ["RetryableWriteError"]}),
        id="RetryableWriteError",
    ),
    pytest.param(
        AutoReconnect("reset", errors={"errorLabels": ["TransientTransactionError"]}),
        id="AutoReconnect-in-transaction",
    ),
]

PERMANENT = [
    pytest.param(
        DuplicateKeyError("E11000 duplicate key", 11000, {"code": 11000}), id="DuplicateKey"
    ),
    pytest.param(server_error(2, "bad value"), id="BadValue"),
    pytest.param(server_error(121, "document failed validation"), id="DocumentValidation"),
    pytest.param(
        BulkWriteError({"writeErrors": [{"code": 11000, "errmsg": "dup"}], "nInserted": 0}),
        id="BulkWriteError-duplicate",
    ),
    pytest.param(ConfigurationError("bad URI"), id="ConfigurationError"),
    pytest.param(RuntimeError("a bug"), id="RuntimeError"),
    pytest.param(ValueError("a bug"), id="ValueError"),
]


@pytest.mark.parametrize("exc", TRANSIENT)
def test_transient_failures_become_unavailable_retries(exc: Exception) -> None:
    refusal = unavailable(exc)
    assert refusal is not None
    assert refusal.code is ErrorCode.UNAVAILABLE
    assert refusal.retry_after_ms == mongo.RETRY_AFTER_MS
    assert type(exc).__name__ in refusal.message


@pytest.mark.parametrize("exc", PERMANENT)
def test_permanent_failures_are_not_retries(exc: Exception) -> None:
    assert unavailable(exc) is None


def test_the_budget_fits_inside_the_ack_deadline() -> None:
    assert mongo.COMMAND_BUDGET_S < ACK_DEADLINE_S
    assert mongo.SERVER_SELECTION_TIMEOUT_MS / 1000 < mongo.COMMAND_BUDGET_S
    assert mongo.CONNECT_TIMEOUT_MS / 1000 < mongo.COMMAND_BUDGET_S
    assert mongo.SOCKET_TIMEOUT_MS / 1000 < ACK_DEADLINE_S


@pytest.mark.parametrize(
    ("hello", "accepted"),
    [
        ({"isWritablePrimary": True, "setName": "rs0", "hosts": ["m:27017"]}, True),
        ({"isWritablePrimary": False, "secondary": True, "setName": "rs0"}, True),
        ({"isWritablePrimary": True, "msg": "isdbgrid"}, True),
        ({"isWritablePrimary": True, "maxWireVersion": 25}, False),
    ],
    ids=["primary", "secondary", "mongos", "standalone"],
)
def test_replica_set_required(hello: dict[str, object], accepted: bool) -> None:
    problem = replica_set_problem(hello)
    if accepted:
        assert problem is None
    else:
        assert problem is not None
        assert "standalone" in problem
        assert "--replSet" in problem
        assert "rs.initiate()" in problem


@pytest.fixture
def dead_url() -> str:
    """A MongoDB URL whose port nobody listens on (the server is gone)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"mongodb://127.0.0.1:{port}/?directConnection=true"


async def test_an_unreachable_server_is_refused_at_start(dead_url: str) -> None:
    started = time.monotonic()
    with pytest.raises(MongoSetupError, match="did not answer"):
        await require_replica_set(dead_url)
    assert time.monotonic() - started < ACK_DEADLINE_S


async def test_a_command_against_a_dead_server_answers_retry_in_time(dead_url: str) -> None:
    client, db = connect_mongo(dead_url, "chat")

    async def write(cmd: Command[MembersQuery]) -> None:
        async def work(session: AsyncClientSession) -> None:
            await db["groups"].insert_one({"_id": cmd.payload.group_id}, session=session)

        await in_transaction(client, work)

    async def read(cmd: Command[MembersQuery]) -> None:
        await db["groups"].find_one({"_id": cmd.payload.group_id})

    router = Router("demo")
    router.internal("write", MembersQuery, write)
    router.internal("read", MembersQuery, read)
    body = encode(Command(actor=ALICE, payload=MembersQuery(group_id="g1")))
    try:
        for action in ("write", "read"):
            started = time.monotonic()
            reply = await router.dispatch(action, body)
            elapsed = time.monotonic() - started
            assert (reply.status, reply.code) == ("retry", "UNAVAILABLE"), reply
            assert reply.retry_after == mongo.RETRY_AFTER_MS
            assert elapsed < ACK_DEADLINE_S, f"{action} took {elapsed:.1f} s"
    finally:
        await client.close()


async def test_a_transient_failure_in_a_handler_is_a_retry_not_internal() -> None:
    async def failover(cmd: Command[MembersQuery]) -> None:
        raise NotPrimaryError("not primary", {"code": 10107})

    async def bug(cmd: Command[MembersQuery]) -> None:
        raise DuplicateKeyError("E11000", 11000)

    router = Router("demo")
    router.internal("failover", MembersQuery, failover)
    router.internal("bug", MembersQuery, bug)
    body = encode(Command(actor=ALICE, payload=MembersQuery(group_id="g1")))
    reply = await router.dispatch("failover", body)
    assert (reply.status, reply.code, reply.retry_after) == (
        "retry",
        "UNAVAILABLE",
        mongo.RETRY_AFTER_MS,
    )
    reply = await router.dispatch("bug", body)
    assert (reply.status, reply.code) == ("error", "INTERNAL")
    assert msgspec.to_builtins(reply)["error"] == "internal error"


#: A worker whose store is MongoDB (the factories are never reached when it is refused).
WORKER = """
from contextlib import asynccontextmanager
from chat_runtime.service import main, opened_store
from chat_runtime.settings import BaseSettings
from chat_runtime.worker import Router

@asynccontextmanager
async def build(settings, bus):
    async with opened_store(settings, "demo.sqlite3", print, print):
        yield Router("demo")

main("demo", BaseSettings, build)
"""


def test_a_worker_refuses_an_unusable_mongodb_at_start(nats_url: str, dead_url: str) -> None:
    env = {
        **os.environ,
        "CHAT_NATS_URL": nats_url,
        "CHAT_STORE": "mongo",
        "CHAT_MONGODB_URL": dead_url,
    }
    done = subprocess.run(
        [sys.executable, "-c", WORKER], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("configuration error: MongoDB did not answer `hello`"), done.stderr
