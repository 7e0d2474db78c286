"""The command table is honest: an event nobody serves is NOT_IMPLEMENTED at once."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.integration.conftest import Connect

OFFER = {
    "targetUserId": "bob",
    "offer": {"type": "offer", "sdp": "v=0"},
    "callType": "audio",
}


@pytest.mark.parametrize(
    ("event", "payload"),
    [
        # No messages handler yet: the worker used to answer NOT_FOUND "unknown command".
        ("message:edit", {"messageId": "m_1", "content": "x"}),
        # No calls worker in this stack: the gateway used to wait 5 s, then `retry`
        # (for ever, for a well-behaved client).
        ("call:offer", OFFER),
    ],
)
async def test_an_unserved_event_is_not_implemented_at_once(
    connect: Connect, uid: Callable[[str], str], event: str, payload: dict[str, object]
) -> None:
    client = await connect(uid("early"))
    started = time.monotonic()
    ack = await client.call(event, payload)
    elapsed = time.monotonic() - started
    assert ack["status"] == "error"
    assert ack["code"] == "NOT_IMPLEMENTED"
    assert event in ack["error"]
    assert elapsed < 1.0
    # A served event on the same socket still works.
    assert (await client.call("groups:list", {}))["status"] == "ok"
