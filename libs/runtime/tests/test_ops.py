"""The ops HTTP server: what a kubelet probe and Prometheus get."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry, Counter

from chat_runtime.ops import Ops


async def get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    """One HTTP/1.1 request; (status, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


@pytest_asyncio.fixture
async def ops() -> AsyncIterator[tuple[Ops, int]]:
    registry = CollectorRegistry()
    server = Ops("probe-test", registry)
    port = await server.serve("127.0.0.1", 0)
    yield server, port
    await server.close()


async def test_healthz_says_starting_until_the_process_started(ops: tuple[Ops, int]) -> None:
    server, port = ops
    status, body = await get(port, "/healthz")
    assert (status, json.loads(body)["status"]) == (503, "starting")
    server.started = True
    status, body = await get(port, "/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok", "service": "probe-test"})


async def test_readyz_names_the_failing_check(ops: tuple[Ops, int]) -> None:
    server, port = ops
    server.started = True
    nats_up = True

    async def nats() -> bool:
        return nats_up

    async def store() -> bool:
        raise ConnectionError("store down")

    async def slow() -> bool:
        await asyncio.sleep(30)
        return True

    server.add_check("nats", nats)
    assert (await get(port, "/readyz"))[0] == 200
    server.add_check("store", store)
    server.add_check("redis", slow)
    status, body = await get(port, "/readyz")
    assert status == 503
    assert json.loads(body)["checks"] == {"nats": True, "store": False, "redis": False}


async def test_readyz_fails_while_draining(ops: tuple[Ops, int]) -> None:
    server, port = ops
    server.started = True
    assert (await get(port, "/readyz"))[0] == 200
    server.draining = True
    status, body = await get(port, "/readyz")
    assert status == 503
    assert json.loads(body)["draining"] is True
    # Still alive: liveness must not restart a draining pod.
    assert (await get(port, "/healthz"))[0] == 200


async def test_metrics_are_the_prometheus_text_of_the_registry(ops: tuple[Ops, int]) -> None:
    server, port = ops
    counter = Counter("probe_things", "things", registry=server.registry)
    counter.inc(3)
    status, body = await get(port, "/metrics")
    assert status == 200
    assert b"probe_things_total 3.0" in body


@pytest.mark.parametrize(
    ("method", "path", "status"), [("GET", "/nope", 404), ("POST", "/healthz", 405)]
)
async def test_other_requests_are_refused(
    ops: tuple[Ops, int], method: str, path: str, status: int
) -> None:
    _, port = ops
    assert (await get(port, path, method))[0] == status


async def test_a_silent_client_does_not_block_probes(ops: tuple[Ops, int]) -> None:
    server, port = ops
    server.started = True
    _, idle = await asyncio.open_connection("127.0.0.1", port)  # sends nothing
    assert (await get(port, "/healthz"))[0] == 200
    idle.close()
