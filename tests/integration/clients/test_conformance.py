"""The conformance suite in clients/conformance: node's test runner with the stock
socket.io-client 4 against this stack (two gateways, plus a gateway with the protocol's
default rate limits, a gateway with no worker behind it, and a small stack whose edit
and delete windows are 1 s). What a JavaScript client sees, event by event."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from chat_contracts.errors import ErrorCode
from chat_testkit.servers import NatsServer, ServiceProcess
from chat_testkit.stack import AUDIENCE, ISSUER, Stack
from tests.integration.clients import contract
from tests.integration.clients.conftest import CLIENTS, GENERATED, GRACE_MS, TYPING_EXPIRY_MS
from tests.integration.conftest import serve

#: The windows stack's edit and delete windows (s).
WINDOW_S = 1
#: Sockets one user may hold on the strict gateway.
MAX_SOCKETS = 3
#: The whole suite's wall-time guard (it takes ~30 s on an idle 2-core machine).
SUITE_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def windows_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One gateway and the chat workers with 1 s edit/delete windows."""
    running = Stack(
        workdir=tmp_path_factory.mktemp("windows-stack"),
        gateways=1,
        workers=("messages", "groups", "users"),
        overrides={"CHAT_EDIT_WINDOW_S": str(WINDOW_S), "CHAT_DELETE_WINDOW_S": str(WINDOW_S)},
    )
    yield from serve(running)


@pytest.fixture(scope="module")
def odd_gateways(
    clients_stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """A gateway with the protocol's default rate limits, and one on a NATS server that
    no worker listens to (it cannot learn a user's chats: the handshake says UNAVAILABLE)."""
    workdir = tmp_path_factory.mktemp("odd-gateways")
    lonely_nats = NatsServer(workdir)
    strict_env = clients_stack.env(CHAT_GATEWAY_ID="gateway-strict")
    strict_env = {k: v for k, v in strict_env.items() if not k.startswith("CHAT_RATE_")}
    strict_env["CHAT_MAX_SOCKETS_PER_USER"] = str(MAX_SOCKETS)
    strict = ServiceProcess("gateway", strict_env, workdir, "gateway-strict")
    lonely_env = clients_stack.env(
        CHAT_GATEWAY_ID="gateway-lonely", CHAT_NATS_URL=lonely_nats.url, CHAT_ACK_TIMEOUT_MS="300"
    )
    lonely = ServiceProcess("gateway", lonely_env, workdir, "gateway-lonely")
    try:
        strict.wait_ready()
        lonely.wait_ready()
        yield {"strict": strict.url, "lonely": lonely.url}
    finally:
        for proc in (strict, lonely, lonely_nats):
            proc.stop()


def test_socket_io_client_conformance(
    clients_stack: Stack,
    windows_stack: Stack,
    odd_gateways: dict[str, str],
    node_modules: Path,
) -> None:
    env = {
        **os.environ,
        "CHAT_CONF_URLS": f"{clients_stack.gateway_url(0)},{clients_stack.gateway_url(1)}",
        "CHAT_CONF_STRICT_URL": odd_gateways["strict"],
        "CHAT_CONF_STRICT_MAX_SOCKETS": str(MAX_SOCKETS),
        "CHAT_CONF_NOWORKER_URL": odd_gateways["lonely"],
        "CHAT_CONF_WINDOWS_URL": windows_stack.gateway_url(0),
        "CHAT_CONF_WINDOWS_SECRET": windows_stack.secret,
        "CHAT_CONF_WINDOW_S": str(WINDOW_S),
        "CHAT_CONF_MEDIA_URL": clients_stack.processes["media"].url
        if "media" in clients_stack.processes
        else "",
        "CHAT_CONF_JWT_SECRET": clients_stack.secret,
        "CHAT_CONF_JWT_AUDIENCE": AUDIENCE,
        "CHAT_CONF_JWT_ISSUER": ISSUER,
        "CHAT_CONF_GRACE_MS": str(GRACE_MS),
        "CHAT_CONF_TYPING_EXPIRY_MS": str(TYPING_EXPIRY_MS),
    }
    only = os.environ.get("CHAT_CONF_ONLY")  # one file while developing: messages.test.mjs
    target = [str(CLIENTS / "conformance" / only)] if only else [str(CLIENTS / "conformance")]
    done = subprocess.run(
        [str(node_modules), "--test", "--test-concurrency=4", "--test-reporter=spec", *target],
        cwd=CLIENTS,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT_S,
        check=False,
    )
    print(done.stdout[-20000:])
    print(done.stderr[-5000:])
    # node's spec reporter ends with "\u2139 pass N" lines (an information sign).
    summary = dict(re.findall(r"^\u2139 (tests|pass|fail|skipped|todo) (\d+)$", done.stdout, re.M))
    assert done.returncode == 0, f"conformance failures: {summary}\n{clients_stack.logs()[-6000:]}"
    assert int(summary.get("pass", 0)) > 0
    assert summary.get("fail") == "0"


def test_conformance_suite_names_every_event_of_the_contract() -> None:
    """Every event of the AsyncAPI document (both directions) appears in the suite, so a
    new event cannot land without a conformance test."""
    doc = contract.load(GENERATED / "asyncapi.json")
    events = {e.name for e in contract.client_events(doc) + contract.server_events(doc)}
    source = "".join(p.read_text() for p in (CLIENTS / "conformance").glob("*.mjs"))
    assert sorted(e for e in events if f'"{e}"' not in source) == []


#: Error codes no request can honestly provoke: INTERNAL is a server bug by definition
#: (a worker's catch-all), so the suite cannot ask for one.
UNPROVOKABLE = {"INTERNAL"}


def test_conformance_suite_provokes_every_error_code() -> None:
    source = "".join(p.read_text() for p in (CLIENTS / "conformance").glob("*.mjs"))
    codes = {code.value for code in ErrorCode} - UNPROVOKABLE
    assert sorted(c for c in codes if f'"{c}"' not in source) == []
