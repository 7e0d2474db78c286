"""A stack for the calls tests: two gateways, the workers the gateways need, one calls
worker (a second one is started by the crash test), with the call time rules shortened
(same code paths, smaller numbers: the rules at protocol scale are tested in-process
with a manual clock in services/calls/tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from chat_testkit.stack import Stack
from tests.integration.conftest import Connect, connector, serve

__all__ = ["Connect"]

RING_TIMEOUT_MS = 4_000
DISCONNECT_MS = 1_500
SWEEP_INTERVAL_MS = 200
#: Two sweeps of slack on top of a deadline before a test calls it missed, plus room
#: for a loaded 2-core machine.
SLACK_S = 3.0

#: A session description as aiortc makes it (shape-checked by the calls worker).
OFFER_SDP = (
    "v=0\r\no=- 3912345678 3912345678 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    "a=group:BUNDLE 0\r\na=msid-semantic:WMS *\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 96 0 8\r\nc=IN IP4 0.0.0.0\r\na=sendrecv\r\na=mid:0\r\n"
    "a=rtpmap:96 opus/48000/2\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef012345\r\n"
    "a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:"
    "66:77:88:99:AA:BB:CC:DD:EE:FF\r\na=setup:actpass\r\n"
)
OFFER = {"type": "offer", "sdp": OFFER_SDP}
ANSWER = {"type": "answer", "sdp": OFFER_SDP.replace("actpass", "active")}
CANDIDATE = {
    "candidate": "candidate:1 1 udp 2130706431 192.0.2.10 50000 typ host",
    "sdpMid": "0",
    "sdpMLineIndex": 0,
}


@pytest.fixture(scope="session")
def calls_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Started once for the calls tests; skipped (naming the part) if a binary is missing."""
    running = Stack(
        workdir=tmp_path_factory.mktemp("calls-stack"),
        workers=("messages", "groups", "users", "calls"),
        overrides={
            "CHAT_CALL_RING_TIMEOUT_MS": str(RING_TIMEOUT_MS),
            "CHAT_CALL_DISCONNECT_MS": str(DISCONNECT_MS),
            "CHAT_CALL_SWEEP_INTERVAL_MS": str(SWEEP_INTERVAL_MS),
            "CHAT_STUN_URLS": "stun:stun.calls.test:3478",
            "CHAT_TURN_URLS": "turn:turn.calls.test:3478?transport=udp",
            "CHAT_TURN_SECRET": "calls-test-secret",
            "CHAT_RATE_OTHER_PER_MIN": "60000",
        },
    )
    yield from serve(running)


#: `dial`'s type (the same as the main stack's `connect`).
CallsConnect = Connect


@pytest_asyncio.fixture
async def dial(calls_stack: Stack) -> AsyncIterator[Connect]:
    """`await dial(user_id, gateway=0)`: a connected socket on the calls stack."""
    async for opener in connector(calls_stack):
        yield opener
