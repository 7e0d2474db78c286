"""The command table is honest: an event nobody serves is NOT_IMPLEMENTED at once."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from chat_testkit.client import ChatClient
from chat_testkit.stack import Stack
from tests.integration.conftest import extra_gateway

OFFER = {
    "targetUserId": "bob",
    "offer": {"type": "offer", "sdp": "v=0"},
    "callType": "audio",
}


@pytest.mark.parametrize(
    ("event", "payload"),
    [
        # The calls component left out of the deployment (`CHAT_OPTIONAL_SERVICES`
        # without it): the gateway used to wait 5 s, then `retry` (for ever, for a
        # well-behaved client).
        ("call:offer", OFFER),
    ],
)
async def test_an_unserved_event_is_not_implemented_at_once(
    stack: Stack, uid: Callable[[str], str], event: str, payload: dict[str, object]
) -> None:
    with extra_gateway(stack, "gateway-no-calls", CHAT_OPTIONAL_SERVICES="") as url:
        client = await ChatClient("early").connect(url, stack.token(uid("early")))
        try:
            await _refused_at_once(client, event, payload)
        finally:
            await client.close()


async def _refused_at_once(client: ChatClient, event: str, payload: dict[str, object]) -> None:
    started = time.monotonic()
    ack = await client.call(event, payload)
    elapsed = time.monotonic() - started
    assert ack["status"] == "error"
    assert ack["code"] == "NOT_IMPLEMENTED"
    assert event in ack["error"]
    assert elapsed < 1.0
    # A served event on the same socket still works.
    assert (await client.call("groups:list", {}))["status"] == "ok"
