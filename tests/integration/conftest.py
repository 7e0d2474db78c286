"""The integration stack: real nats-server, redis-server, two gateways and the workers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager

import pytest
import pytest_asyncio

from chat_testkit.client import ChatClient
from chat_testkit.servers import Missing
from chat_testkit.stack import Stack

#: Protocol timings shortened for the suite (same code paths, smaller numbers).
GRACE_MS = 1_000
TYPING_EXPIRY_MS = 1_500
#: Gateways beat this often; the users sweep takes one silent for the TTL for dead.
HEARTBEAT_MS = 200
HEARTBEAT_TTL_MS = 1_000
SWEEP_MS = 100


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Everything running once for the session; skipped (naming the part) if a binary is missing."""
    running = Stack(
        workdir=tmp_path_factory.mktemp("stack"),
        overrides={
            "CHAT_PRESENCE_GRACE_MS": str(GRACE_MS),
            "CHAT_TYPING_EXPIRY_MS": str(TYPING_EXPIRY_MS),
            "CHAT_HEARTBEAT_MS": str(HEARTBEAT_MS),
            "CHAT_HEARTBEAT_TTL_MS": str(HEARTBEAT_TTL_MS),
            "CHAT_PRESENCE_SWEEP_MS": str(SWEEP_MS),
            "CHAT_STATUS_SWEEP_MS": str(SWEEP_MS),
            # A closing long-polling client waits out the pending poll (one interval).
            "CHAT_PING_INTERVAL_MS": "3000",
            "CHAT_PING_TIMEOUT_MS": "5000",
            # Tests send in bursts; the rate-limit test runs its own gateway with the
            # protocol's default buckets (see test_validation.py).
            "CHAT_RATE_OTHER_PER_MIN": "60000",
            "CHAT_RATE_SEND_PER_S": "1000",
            "CHAT_RATE_SEND_BURST": "1000",
            "CHAT_RATE_TYPING_PER_S": "1000",
            "CHAT_RATE_GROUP_CREATE_PER_MIN": "60000",
            "CHAT_RATE_SYNC_PER_MIN": "60000",
            # Every test connects from 127.0.0.1: the per-address handshake limit has
            # its own gateway in test_edge.py.
            "CHAT_HANDSHAKES_PER_ADDRESS_PER_S": "0",
            # Media: progress every 50 ms, abandoned uploads expire after 2 s.
            "CHAT_MEDIA_PROGRESS_INTERVAL_MS": "50",
            "CHAT_MEDIA_SESSION_TTL_MS": "2000",
            "CHAT_MEDIA_SWEEP_INTERVAL_MS": "200",
        },
    )
    yield from serve(running)


def serve(running: Stack) -> Iterator[Stack]:
    """A session stack's life: started (skipped naming a missing part), yielded, then
    stopped with every service required to drain cleanly on SIGTERM."""
    try:
        running.start()
    except Missing as exc:
        running.stop()
        pytest.skip(str(exc))
    except Exception:
        print(running.logs())
        running.stop()
        raise
    yield running
    statuses = running.stop()
    failed = {name: code for name, code in statuses.items() if code != 0}
    assert not failed, f"services did not drain cleanly on SIGTERM: {failed}\n{running.logs()}"


Connect = Callable[..., Awaitable[ChatClient]]


@contextmanager
def extra_gateway(stack: Stack, name: str, **env: str) -> Iterator[str]:
    """One more gateway on the running stack with its own settings; its URL."""
    proc = stack.add("gateway", name, CHAT_GATEWAY_ID=name, **env)
    try:
        proc.wait_ready()
        yield proc.url
    finally:
        proc.stop()
        del stack.processes[name]


@pytest_asyncio.fixture
async def connect(stack: Stack) -> AsyncIterator[Connect]:
    """`await connect(user_id, gateway=0)`: a connected socket, closed after the test."""
    async for opener in connector(stack):
        yield opener


async def connector(stack: Stack) -> AsyncIterator[Connect]:
    """A `Connect` on `stack` whose sockets are closed when the generator ends."""
    clients: list[ChatClient] = []

    async def _connect(user_id: str, gateway: int = 0, name: str | None = None) -> ChatClient:
        client = ChatClient(f"{user_id}@{gateway}")
        await client.connect(stack.gateway_url(gateway), stack.token(user_id, name))
        clients.append(client)
        return client

    yield _connect
    for client in clients:
        await client.close()


def cmid() -> str:
    """A fresh clientMessageId."""
    return uuid.uuid4().hex


async def make_group(owner: ChatClient, *members: str, name: str = "team") -> str:
    """Create a group through the owner's socket; its id."""
    ack = await owner.call("group:create", {"name": name, "memberIds": list(members)})
    assert ack["status"] == "ok", ack
    group_id: str = ack["group"]["id"]
    return group_id


@pytest.fixture
def uid() -> Callable[[str], str]:
    """Unique user ids per test, so tests never see each other's chats."""
    suffix = uuid.uuid4().hex[:8]
    return lambda name: f"{name}-{suffix}"
