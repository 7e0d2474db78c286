"""What a platform sees of the processes: ops port, metrics, transports policy."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager

import aiohttp
import pytest
import pytest_asyncio
import socketio

from chat_testkit.client import ChatClient
from chat_testkit.servers import ServiceProcess
from chat_testkit.stack import Stack
from tests.integration.media_client import pdf_bytes


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


@contextmanager
def extra(stack: Stack, service: str, name: str, **env: str) -> Iterator[ServiceProcess]:
    """One more process of `service` with its ops port on; stopped (and drained) after."""
    extra_env = {"CHAT_HEALTH_PORT": "0", **env}
    if service == "gateway":
        extra_env["CHAT_GATEWAY_ID"] = name
    proc = stack.add(service, name, **extra_env)
    try:
        proc.wait_ready()
        yield proc
    finally:
        code = proc.stop()
        del stack.processes[name]
        assert code == 0, proc.tail()


def sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one sample in the Prometheus text format (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "")
    match = re.search(rf"^{pattern} (\S+)$", metrics, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def sockets_reach(http: aiohttp.ClientSession, ops_url: str, count: int) -> None:
    """Wait (5 s at most) until the gateway's metrics count `count` WebSocket sockets."""
    async with asyncio.timeout(5):
        while True:
            async with http.get(ops_url + "/metrics") as resp:
                text = await resp.text()
            if sample(text, "chat_gateway_sockets", transport="websocket") == count:
                return
            await asyncio.sleep(0.05)


async def test_a_gateway_serves_health_readiness_and_metrics(
    stack: Stack, http: aiohttp.ClientSession, uid: Callable[[str], str]
) -> None:
    with extra(stack, "gateway", "gateway-ops") as gw:
        async with http.get(gw.ops_url + "/healthz") as resp:
            assert resp.status == 200
        async with http.get(gw.ops_url + "/readyz") as resp:
            assert resp.status == 200
            assert (await resp.json())["checks"] == {"nats": True, "redis": True}
        client = ChatClient("ops")
        await client.connect(gw.url, stack.token(uid("ops")), transports=["websocket"])
        try:
            ack = await client.call("group:create", {"name": "ops", "memberIds": []})
            assert ack["status"] == "ok"
            bad = await client.call("group:create", {"name": 5})
            assert bad["code"] == "VALIDATION_ERROR"
            async with http.get(gw.ops_url + "/metrics") as resp:
                text = await resp.text()
        finally:
            await client.close()
        assert sample(text, "chat_gateway_sockets", transport="websocket") == 1
        assert sample(text, "chat_gateway_connects_total") == 1
        assert sample(text, "chat_gateway_events_total", event="group:create") == 2
        assert sample(text, "chat_gateway_acks_total", status="ok", code="") == 1
        assert sample(text, "chat_gateway_acks_total", status="error", code="VALIDATION_ERROR") == 1
        count = sample(text, "chat_gateway_ack_seconds_count", event="group:create")
        assert count == 2
        # group:create fans out group:created to the creator's other sockets (none here)
        # and joins the room: the counter exists and is read at scrape time.
        assert "chat_gateway_fanout_deliveries_total" in text
        # Read at scrape time too: the events parsed and waiting on sockets (none now).
        assert "chat_gateway_queued_events " in text
        assert sample(text, "chat_gateway_queued_events") == 0


async def test_a_refused_handshake_is_counted_by_code(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    with extra(stack, "gateway", "gateway-refusals") as gw:
        client = ChatClient("refused")
        try:
            with pytest.raises(socketio.exceptions.ConnectionError):
                await client.connect(gw.url, "not-a-token")
        finally:
            await client.close()
        async with http.get(gw.ops_url + "/metrics") as resp:
            text = await resp.text()
        assert sample(text, "chat_gateway_connect_refusals_total", code="UNAUTHORIZED") == 1
        assert sample(text, "chat_gateway_connects_total") == 0


async def test_a_worker_serves_health_and_readiness(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    with extra(stack, "groups", "groups-ops") as worker:
        async with http.get(worker.ops_url + "/healthz") as resp:
            assert resp.status == 200
        async with http.get(worker.ops_url + "/readyz") as resp:
            assert resp.status == 200
            assert (await resp.json())["checks"] == {"nats": True, "store": True}
        async with http.get(worker.ops_url + "/metrics") as resp:
            assert resp.headers["Content-Type"].startswith("text/plain")
            assert "chat_worker_commands" in await resp.text()


async def test_a_websocket_only_gateway_refuses_polling_naming_the_setting(
    stack: Stack, http: aiohttp.ClientSession, uid: Callable[[str], str]
) -> None:
    with extra(stack, "gateway", "gateway-ws-only", CHAT_TRANSPORTS="websocket") as gw:
        async with http.get(gw.url + "/socket.io/?EIO=4&transport=polling") as resp:
            assert resp.status == 400
            assert "CHAT_TRANSPORTS=websocket" in (await resp.json())["message"]
        client = ChatClient("ws-only")
        await client.connect(gw.url, stack.token(uid("ws")), transports=["websocket"])
        try:
            assert (await client.call("groups:list", {}))["status"] == "ok"
        finally:
            await client.close()


async def test_the_debug_endpoint_is_served_only_when_asked_for(
    stack: Stack, http: aiohttp.ClientSession, uid: Callable[[str], str]
) -> None:
    async with http.post(stack.gateway_url(0) + "/debug/gc") as resp:
        assert resp.status in (404, 405)  # production settings: not routed
    with extra(stack, "gateway", "gateway-debug", CHAT_DEBUG_ENDPOINTS="1") as gw:
        client = ChatClient("debug")
        await client.connect(gw.url, stack.token(uid("debug")), transports=["websocket"])
        try:
            async with http.post(gw.url + "/debug/gc") as resp:
                assert resp.status == 200
                body = await resp.json()
            async with http.post(gw.url + "/debug/gc?trim=1") as resp:
                trim = (await resp.json())["trim"]
            # A second user comes and goes: the gateway unsubscribes from its subject.
            passer = ChatClient("passer")
            await passer.connect(gw.url, stack.token(uid("passer")), transports=["websocket"])
            await passer.close()
            await sockets_reach(http, gw.ops_url, 1)
            async with http.post(gw.url + "/debug/gc?garbage=1") as resp:
                cycles = await resp.json()
        finally:
            await client.close()
    assert body["sockets"] == 1
    # Live objects by type, most numerous first (what grows between two readings leaks).
    counts = list(body["types"].values())
    assert body["types"]["dict"] > 0
    assert counts == sorted(counts, reverse=True)
    assert "trim" not in body
    assert "garbage" not in body
    # The collector's own counts per generation, read before the endpoint collects.
    assert [set(gen) for gen in body["generations"]] == [
        {"collections", "collected", "uncollectable"}
    ] * 3
    assert len(body["pending"]) == 3
    # What the collection found unreachable, by type (the sum is what it collected);
    # a user's subject unsubscribed leaves nothing that only the collector frees (each
    # left 11 objects before fanout._release: the soak's gateway growth).
    assert sum(cycles["garbage"].values()) == cycles["collected"]
    assert "Subscription" not in cycles["garbage"]
    # RSS before and after glibc's malloc_trim: a gateway is tens of MiB resident.
    assert trim["before_kib"] > 10_000
    assert 0 < trim["after_kib"] <= trim["before_kib"] + 1_024


async def test_media_counts_http_requests_by_route_template_never_by_path(
    stack: Stack, http: aiohttp.ClientSession, uid: Callable[[str], str]
) -> None:
    auth = {"Authorization": f"Bearer {stack.token(uid('ops'))}"}
    with extra(stack, "media", "media-ops") as media:
        created = {"fileName": "ops.pdf", "size": 2_000}
        async with http.post(media.url + "/v1/uploads", json=created, headers=auth) as resp:
            assert resp.status == 201
            upload_url = (await resp.json())["uploadUrl"]
        async with http.put(upload_url, data=pdf_bytes(2_000), headers=auth) as resp:
            assert resp.status == 200
        async with http.head(upload_url, headers=auth) as resp:
            assert resp.status == 200
        async with http.get(media.url + "/v1/media/m_nosuchmedia", headers=auth) as resp:
            assert resp.status == 404
        async with http.get(media.url + "/no/such/path") as resp:
            assert resp.status == 404
        async with http.get(upload_url, headers=auth) as resp:  # PUT and HEAD only
            assert resp.status == 405
        async with http.get(media.ops_url + "/metrics") as resp:
            text = await resp.text()
    upload = "/v1/uploads/{upload_id}"
    requests = "chat_media_http_requests_total"
    assert sample(text, requests, method="POST", route="/v1/uploads", status="201") == 1
    assert sample(text, requests, method="PUT", route=upload, status="200") == 1
    assert sample(text, requests, method="HEAD", route=upload, status="200") == 1
    assert sample(text, requests, method="GET", route="/v1/media/{media_id}", status="404") == 1
    assert sample(text, requests, method="GET", route="unmatched", status="404") == 1
    assert sample(text, requests, method="GET", route="unmatched", status="405") == 1
    seconds = "chat_media_http_request_seconds_count"
    assert sample(text, seconds, method="PUT", route=upload) == 1
    assert sample(text, seconds, method="GET", route="unmatched") == 2
    # Bounded labels: no id, no raw path.
    assert upload_url.rsplit("/", 1)[1] not in text
    assert "m_nosuchmedia" not in text
    assert "/no/such/path" not in text
