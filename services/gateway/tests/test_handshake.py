"""The first request on a connection, decided without I/O."""

from __future__ import annotations

import pytest

from chat_gateway import handshake, wire
from chat_gateway.policy import TransportPolicy

POLICY = TransportPolicy(allowed_origins=frozenset({"https://app.example"}))
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def head(target: str = "/socket.io/?EIO=4&transport=websocket", **headers: str) -> bytes:
    fields = {
        "Host": "gw",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
    }
    fields.update({k.replace("_", "-"): v for k, v in headers.items()})
    lines = [f"GET {target} HTTP/1.1", *(f"{k}: {v}" for k, v in fields.items() if v)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_socketio_websocket_is_upgraded_here() -> None:
    decision = handshake.decide(head(Sec_WebSocket_Extensions="permessage-deflate"), POLICY)
    assert isinstance(decision, handshake.Upgrade)
    assert decision.offers_deflate()
    response = decision.response(deflate=True)
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert f"Sec-WebSocket-Accept: {wire.accept_key(KEY)}".encode() in response
    assert wire.DEFLATE_RESPONSE.encode() in response


@pytest.mark.parametrize(
    "request_head",
    [
        head("/healthz"),
        head("/socket.io/?EIO=4&transport=polling", Upgrade=""),
        head("/socket.io/?EIO=4&transport=websocket&sid=abc"),  # a polling upgrade
    ],
)
def test_everything_else_goes_to_aiohttp(request_head: bytes) -> None:
    assert isinstance(handshake.decide(request_head, POLICY), handshake.HandOver)


@pytest.mark.parametrize(
    ("request_head", "response"),
    [
        (b"GET //[x HTTP/1.1\r\nHost: x\r\n\r\n", handshake.HTTP_400),
        (head("/socket.io/?EIO=3&transport=websocket"), handshake.HTTP_400),
        (head(Sec_WebSocket_Key=""), handshake.HTTP_400),
        (head(Sec_WebSocket_Version="8"), handshake.HTTP_426),
        (head(Origin="https://evil.example"), handshake.HTTP_403),
    ],
)
def test_bad_upgrades_are_refused(request_head: bytes, response: bytes) -> None:
    assert handshake.decide(request_head, POLICY) == handshake.Reject(response)
