"""The client-facing tests run on the integration session stack (two gateways for the
conformance suite) plus one more gateway that serves the web client (on a port chosen
here, so that its origin can be allowed), and the Node modules of `clients/` installed
from the committed lock."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chat_testkit.stack import ALLOWED_ORIGIN, Stack
from tests.integration.conftest import GRACE_MS, TYPING_EXPIRY_MS

__all__ = ["GRACE_MS", "TYPING_EXPIRY_MS"]

ROOT = Path(__file__).resolve().parents[3]
CLIENTS = ROOT / "clients"
GENERATED = ROOT / "libs" / "contracts" / "generated"


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """`clients/node_modules`, installed with `npm ci` from the committed lock when absent
    or older than the lock; the `node` binary's path."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        # A plain skip naming the part: chat_testkit.strict_ci fails it under CI=true.
        pytest.skip("node and npm are not installed (Debian packages nodejs, npm)")
    marker = CLIENTS / "node_modules" / ".package-lock.json"
    lock = CLIENTS / "package-lock.json"
    if not marker.exists() or marker.stat().st_mtime < lock.stat().st_mtime:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--prefix", str(CLIENTS)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return Path(node)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass(frozen=True)
class WebGateway:
    """The gateway that serves the web client, with dev sign-in on."""

    url: str


@pytest.fixture(scope="session")
def clients_stack(stack: Stack) -> Stack:
    """The integration tests' session stack (every worker, gateways a and b, relaxed rate
    limits, no per-address handshake limit): one stack for the whole run. The
    conformance suite brings its own strict gateway for RATE_LIMITED."""
    return stack


@pytest.fixture(scope="session")
def web_gateway(clients_stack: Stack) -> Iterator[WebGateway]:
    """One more gateway of the clients stack serving the web client at `/`."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    media = clients_stack.processes.get("media")
    proc = clients_stack.add(
        "gateway",
        "gateway-web",
        CHAT_GATEWAY_ID="gateway-web",
        CHAT_GATEWAY_PORT=str(port),
        CHAT_WEB_CLIENT="1",
        CHAT_DEV_MODE="1",
        CHAT_ALLOWED_ORIGINS=f"{origin},{ALLOWED_ORIGIN}",
        CHAT_WEB_MEDIA_URL=media.url if media is not None else "",
    )
    proc.wait_ready()
    yield WebGateway(url=origin)
    proc.stop()
    del clients_stack.processes["gateway-web"]
