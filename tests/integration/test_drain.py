"""Drains: SIGTERM to a gateway with many clients connected and messages flowing, and
to a messages worker with commands in flight.

Gateway: readiness fails at once, the listener closes, the clients are disconnected in
jittered batches spread over `CHAT_DRAIN_WINDOW_MS` (no thundering herd on the other
gateway), the process exits well before a grace period of window + 5 s, and after
`sync` no message is lost or doubled. Worker: every command it had taken (running, or
queued behind `CHAT_MAX_IN_FLIGHT`) is answered before it exits; none is left to the
gateway's deadline.

`CHAT_DRAIN_CLIENTS` sets how many clients the gateway drains (default 300; `./taskw
soak` uses 2,000).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import socketio

from chat_testkit import faults
from chat_testkit.probes import LogMark
from chat_testkit.stack import Stack
from chat_testkit.traffic import Member, Traffic, audit
from tests.integration.conftest import serve

CLIENTS = int(os.environ.get("CHAT_DRAIN_CLIENTS", "300"))
WINDOW_MS = 2_000
#: The worker takes this many commands at once; the rest wait in its subscription.
IN_FLIGHT = 4


@pytest.fixture(scope="module")
def drain_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(
        workdir=tmp_path_factory.mktemp("drain"),
        workers=("messages", "groups", "users"),
        overrides={
            "CHAT_MAX_IN_FLIGHT": str(IN_FLIGHT),
            "CHAT_DRAIN_WINDOW_MS": str(WINDOW_MS),
            # Hundreds of clients from one address (see test_soak.py).
            "CHAT_HANDSHAKES_PER_ADDRESS_PER_S": "0",
            "CHAT_MAX_PENDING_PER_ADDRESS": "4096",
            "CHAT_RATE_SEND_PER_S": "1000",
            "CHAT_RATE_SEND_BURST": "1000",
            "CHAT_RATE_OTHER_PER_MIN": "60000",
            "CHAT_RATE_SYNC_PER_MIN": "60000",
        },
    )
    yield from serve(running)


def _db(stack: Stack) -> Path:
    return stack.workdir / "data" / "messages.sqlite3"


async def test_a_drained_worker_answers_every_command_it_took(drain_stack: Stack) -> None:
    second = faults.respawn(drain_stack, "messages-2", "messages")
    sender = socketio.AsyncClient(reconnection=False)
    await sender.connect(
        drain_stack.gateway_url(0),
        auth={"token": drain_stack.token("drain-sender")},
        transports=["websocket"],
    )
    try:
        # 40 sends pile up behind a held write lock: 4 running in each worker, the rest
        # queued in their subscriptions. Then the first worker is told to stop.
        holder = await asyncio.to_thread(faults.hold_lock_for, _db(drain_stack), 1.5)
        sends = [
            asyncio.ensure_future(
                sender.call(
                    "message:send",
                    {"clientMessageId": uuid.uuid4().hex, "targetUserId": "drain-peer",
                     "content": f"in flight {i}"},
                    timeout=10,
                )
            )
            for i in range(40)
        ]  # fmt: skip
        await asyncio.sleep(0.5)
        started = time.monotonic()
        faults.sigterm(drain_stack.processes["messages"])
        await asyncio.to_thread(holder.join)
        acks = await asyncio.gather(*sends)
        code = await asyncio.to_thread(drain_stack.processes["messages"].proc.wait, 15)
        took = time.monotonic() - started
    finally:
        await sender.disconnect()
    outcomes = sorted({f"{a['status']} {a.get('code', '')}" for a in acks})
    assert all(a["status"] == "ok" for a in acks), outcomes
    assert code == 0
    print(f"worker drain: 40 commands in flight, all acked ok; exited 0 after {took:.1f} s")
    # The replica goes on alone; the drained one comes back for the next test.
    faults.respawn(drain_stack, "messages", "messages")
    second.stop()
    del drain_stack.processes["messages-2"]


async def test_a_drained_gateway_spreads_its_clients_and_loses_nothing(
    drain_stack: Stack,
) -> None:
    """CLIENTS sockets on gateway-b, one in six of their group mates on gateway-a, all
    sending; SIGTERM to gateway-b."""
    groups = CLIENTS // 5
    members = [Member(f"drain-b{i}", "") for i in range(CLIENTS)]
    members += [Member(f"drain-a{i}", "") for i in range(groups)]
    for member in members:
        member.token = drain_stack.token(member.user_id)
    # ~50 messages/s in all, each to a group of six.
    traffic = Traffic(lambda: live_gateways(drain_stack), members, pace_hz=50 / len(members))
    on_b, on_a = members[:CLIENTS], members[CLIENTS:]
    for chunk in range(0, len(members), 50):
        await asyncio.gather(
            *(traffic.connect(m, prefer=1 if m in on_b else 0) for m in members[chunk : chunk + 50])
        )
    assert {m.gateway for m in on_b} == {drain_stack.gateway_url(1)}
    for g in range(groups):
        owner, mates = on_a[g], on_b[g * 5 : g * 5 + 5]
        assert owner.sio is not None
        ack = await owner.sio.call(
            "group:create",
            {"name": f"drain {g}", "memberIds": [m.user_id for m in mates]},
            timeout=10,
        )
        assert ack["status"] == "ok", ack
        for member in (owner, *mates):
            member.chats[ack["group"]["id"]] = {"groupId": ack["group"]["id"]}
    gateway = drain_stack.processes["gateway-b"]
    url = gateway.url
    probe = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
    assert await _readiness(probe, url) == "200"
    try:
        traffic.start()
        await asyncio.sleep(2.0)
        log = LogMark.now(gateway)
        signalled = time.monotonic()
        faults.sigterm(gateway)
        ready = await _readiness(probe, url)
        not_ready_after = time.monotonic() - signalled
        refused = not await _accepts(url)
        code = await asyncio.to_thread(gateway.proc.wait, WINDOW_MS / 1000 + 5)
        exited_after = time.monotonic() - signalled
        for _ in range(100):
            if all(m.disconnects for m in on_b):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # messages keep flowing through gateway-a
        await traffic.stop()
        await traffic.settle()
        await traffic.sync_all()
        result = audit(traffic, _db(drain_stack))
    finally:
        await traffic.close()
        await probe.close()
    window = _drain_window(log.since())
    times = sorted(m.disconnects[0] - signalled for m in on_b if m.disconnects)
    buckets: dict[int, int] = {}
    for t in times:
        buckets[int(t * 10)] = buckets.get(int(t * 10), 0) + 1
    report = (
        f"gateway drain of {CLIENTS} sockets: not ready after {not_ready_after * 1000:.0f} ms "
        f"({ready}), new connections refused: {refused}; disconnects from "
        f"{times[0] * 1000:.0f} to {times[-1] * 1000:.0f} ms (window {window * 1000:.0f} ms), "
        f"largest 100 ms batch {max(buckets.values())}; exited {code} after "
        f"{exited_after:.1f} s; {result.summary()}"
    )
    print(report)
    assert ready == "503 draining", report
    assert not_ready_after < 0.5, report
    assert refused, report
    assert code == 0, report
    # Before a grace period of the window plus 5 s (Kubernetes would SIGKILL then).
    assert exited_after < window + 5, report
    assert len(times) == CLIENTS, report
    assert times[-1] - times[0] > 0.6 * window, report
    assert max(buckets.values()) < CLIENTS / 4, report
    assert not traffic.hangs, traffic.hangs[:5]
    assert not [o for o in result.outcomes if "INTERNAL" in o], report
    assert not result.problems, "\n".join(result.problems[:20])
    assert all(m.connects >= 2 for m in on_b), "a client of gateway-b did not reconnect"


def live_gateways(stack: Stack) -> list[str]:
    """URLs of the gateways that run now."""
    return [
        p.url
        for name, p in sorted(stack.processes.items())
        if name.startswith("gateway") and p.proc.poll() is None and p.port is not None
    ]


async def _readiness(http: aiohttp.ClientSession, url: str) -> str:
    """`/readyz` over a kept-alive connection (a load balancer's probe): the listener
    is closed, but a connection already open still gets an answer."""
    try:
        async with http.get(url + "/readyz") as resp:
            body = await resp.json()
            return f"{resp.status} draining" if body.get("draining") else f"{resp.status}"
    except aiohttp.ClientConnectionError:
        return "refused"


async def _accepts(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    try:
        _, writer = await asyncio.open_connection(host, int(port))
    except OSError:
        return False
    writer.close()
    return True


def _drain_window(log: str) -> float:
    match = re.search(r"draining (\d+) sockets over (\d+) ms", log)
    assert match, log[-2000:]
    return int(match.group(2)) / 1000
