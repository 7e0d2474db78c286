"""One client action followed across processes: JSON log lines and NATS headers share its
W3C trace id, from the gateway through the worker and back (CHAT_LOG_FORMAT=json)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import nats
import pytest
from nats.aio.msg import Msg

from chat_runtime import trace
from chat_testkit.client import ChatClient
from chat_testkit.stack import Stack
from tests.integration.conftest import serve


@pytest.fixture(scope="module")
def json_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A small stack of its own whose processes log JSON at DEBUG."""
    running = Stack(
        workdir=tmp_path_factory.mktemp("json-stack"),
        gateways=1,
        overrides={"CHAT_LOG_FORMAT": "json", "CHAT_LOG_LEVEL": "DEBUG"},
    )
    yield from serve(running)


def lines(stack: Stack, name: str) -> list[dict[str, Any]]:
    """Every line of a process's log, each of which must be one JSON object."""
    text = stack.processes[name].log.read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def test_a_trace_id_follows_one_action_across_processes(json_stack: Stack) -> None:
    assert json_stack.nats is not None
    seen: asyncio.Queue[Msg] = asyncio.Queue()

    async def on_fanout(msg: Msg) -> None:
        await seen.put(msg)

    watcher = await nats.connect(json_stack.nats.url)
    await watcher.subscribe("rt.>", cb=on_fanout)
    await watcher.flush()
    owner = f"tracer-{uuid.uuid4().hex[:8]}"
    client = ChatClient("tracer")
    await client.connect(json_stack.gateway_url(0), json_stack.token(owner))
    try:
        ack = await client.call("group:create", {"name": "traced", "memberIds": []})
        assert ack["status"] == "ok"
    finally:
        await client.close()

    # The gateway logs the event before it sends the ack.
    gateway = [
        line for line in lines(json_stack, "gateway-a") if line["msg"].startswith("group:create ok")
    ]
    assert len(gateway) == 1, gateway
    (event,) = gateway
    assert event["service"] == "gateway"
    assert event["gateway"] == "gateway-a"
    assert event["user"] == owner
    trace_id = event["trace"]

    handled = [
        line
        for line in lines(json_stack, "groups")
        if line["msg"].startswith("cmd.groups.create ok")
    ]
    assert [(line["trace"], line["user"], line["service"]) for line in handled] == [
        (trace_id, owner, "groups")
    ]

    # Back towards the gateways: the fan-out the command caused carries the same trace.
    try:
        while True:
            msg = await asyncio.wait_for(seen.get(), 5)
            header = (msg.headers or {}).get(trace.HEADER, "")
            assert trace.valid(header), msg.headers
            if trace.trace_id(header) == trace_id:
                break
    finally:
        await watcher.close()

    # Every line of every process is one JSON object naming its service.
    for name in json_stack.processes:
        assert all("service" in line for line in lines(json_stack, name))
