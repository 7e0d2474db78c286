"""A real MongoDB for store contract tests, or a skip that names what is missing.

Order: `CHAT_MONGODB_URL` when set; else a testcontainers `mongo:8` started as a
single-node replica set when a Docker engine answers; else `pytest.skip` with the
reason. There is no fake MongoDB. The stores need a replica set (transactions), and
`chat_testkit.stores` refuses a standalone `CHAT_MONGODB_URL` with the reason.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

import pytest
from pymongo.errors import OperationFailure

from chat_runtime.mongo import connect_mongo

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

SKIP_REASON = (
    "MongoDB: CHAT_MONGODB_URL is not set and no Docker engine answered for testcontainers"
)


def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
    except Exception:  # noqa: BLE001 - any failure means "no engine", which is the answer
        return False
    return True


@contextmanager
def mongo_url() -> Iterator[str]:
    """Yield a MongoDB URL for the session, or skip the requesting test with the reason."""
    url = os.environ.get("CHAT_MONGODB_URL")
    if url:
        yield url
        return
    if not _docker_answers():
        pytest.skip(SKIP_REASON)
    from testcontainers.core.container import DockerContainer

    # No root user: the image's MONGO_INITDB_ROOT_* would turn on authentication, and
    # a replica set with authentication needs a key file.
    # enableTestCommands: `configureFailPoint`, for the tests that inject failures.
    container = DockerContainer(IMAGE).with_command(
        f"--replSet {REPLICA_SET} --bind_ip_all --setParameter enableTestCommands=1"
    )
    with container.with_exposed_ports(PORT):
        _initiate(container)
        host = container.get_container_host_ip()
        port = container.get_exposed_port(PORT)
        # directConnection: the member's own address (127.0.0.1:27017 inside the
        # container) is not the mapped port the tests reach it on.
        yield f"mongodb://{host}:{port}/?directConnection=true"


#: The server the contract suites run on where Docker runs.
IMAGE = "mongo:8"
REPLICA_SET = "rs0"
PORT = 27017
#: First start of a fresh container: mongod up in ~1-2 s, primary ~1-2 s after initiate.
START_TIMEOUT_S = 60.0

#: Initiates the set once (rs.status() throws NotYetInitialized before) and succeeds
#: only when this member is the writable primary.
_INITIATE = f"""
try {{ rs.status(); }} catch (e) {{
  rs.initiate({{_id: '{REPLICA_SET}', members: [{{_id: 0, host: '127.0.0.1:{PORT}'}}]}});
}}
if (!db.hello().isWritablePrimary) {{ quit(1); }}
"""


def _initiate(container: DockerContainer) -> None:
    """Make the container's mongod a one-member replica set and wait for its primary."""
    deadline = time.monotonic() + START_TIMEOUT_S
    command = ["mongosh", "--quiet", "--eval", _INITIATE]
    while True:
        # Fails while mongod is still starting, and until the election is over.
        result = container.exec(command)
        if result.exit_code == 0:
            return
        if time.monotonic() > deadline:
            output = result.output.decode(errors="replace")
            raise RuntimeError(f"MongoDB replica set did not start: {output}")
        time.sleep(0.25)


#: Server error code of a command the server does not have (test commands disabled).
COMMAND_NOT_FOUND = 59
FAIL_POINT_SKIP = (
    "MongoDB: configureFailPoint is disabled on this server"
    " (start mongod with --setParameter enableTestCommands=1)"
)


@asynccontextmanager
async def fail_point(
    url: str, mode: str | dict[str, int], data: dict[str, Any]
) -> AsyncIterator[None]:
    """MongoDB's own failure injection (`failCommand`) for the block, then off again.

    `data` as the server takes it, e.g. `{"failCommands": ["findAndModify"],
    "closeConnection": True, "appName": "chat"}`. Skips the test with the reason when
    the server has test commands disabled (a `CHAT_MONGODB_URL` of production make).
    """
    client, _ = connect_mongo(url, "admin")
    try:
        try:
            await client.admin.command(
                {"configureFailPoint": "failCommand", "mode": mode, "data": data}
            )
        except OperationFailure as exc:
            if exc.code == COMMAND_NOT_FOUND:
                pytest.skip(FAIL_POINT_SKIP)
            raise
        try:
            yield
        finally:
            await client.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
    finally:
        await client.close()


def unique_db_name(prefix: str = "chat_test") -> str:
    """A fresh database name so test runs never see each other's data."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"
