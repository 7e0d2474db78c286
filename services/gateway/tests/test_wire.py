"""WebSocket framing, permessage-deflate and Socket.IO packet parsing."""

from __future__ import annotations

import os
import struct
import zlib

import pytest

from chat_gateway import wire


def client_frame(payload: bytes, opcode: int = wire.OP_TEXT, fin: bool = True,
                 rsv1: bool = False, mask: bytes = b"\x01\x02\x03\x04") -> bytes:  # fmt: skip
    """A masked client→server frame, as a browser sends it."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes((first, 0x80 | n))
    elif n < 1 << 16:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    return head + mask + wire.unmask(mask, payload)


def test_accept_key_matches_rfc6455_example() -> None:
    assert wire.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("size", [0, 5, 125, 126, 65_535, 65_536, 200_000])
def test_server_frames_use_the_shortest_length_encoding(size: int) -> None:
    payload = os.urandom(size)
    out = wire.frame(payload)
    assert out[0] == 0x81
    header = 2 if size < 126 else 4 if size < 65_536 else 10
    assert len(out) == header + size
    assert out[header:] == payload


def test_reader_handles_split_input_and_several_frames_per_read() -> None:
    data = client_frame(b"40") + client_frame(b'42["a",1]') + client_frame(b"x" * 300)
    reader = wire.FrameReader(max_size=1 << 20)
    got = []
    for i in range(0, len(data), 7):  # worst case: 7-byte reads
        got += [m.payload for m in reader.feed(data[i : i + 7])]
    assert got == [b"40", b'42["a",1]', b"x" * 300]


def test_fragmented_message_with_an_interleaved_ping() -> None:
    reader = wire.FrameReader(max_size=1 << 20)
    data = (
        client_frame(b"hel", fin=False)
        + client_frame(b"p", opcode=wire.OP_PING)
        + client_frame(b"lo", opcode=wire.OP_CONTINUATION)
    )
    messages = reader.feed(data)
    assert [(m.opcode, m.payload) for m in messages] == [
        (wire.OP_PING, b"p"),
        (wire.OP_TEXT, b"hello"),
    ]


def test_deflated_client_message_is_inflated() -> None:
    text = b'42["message:send",{"content":"' + b"a" * 2000 + b'"}]'
    reader = wire.FrameReader(max_size=1 << 20, deflate=True)
    [message] = reader.feed(client_frame(wire.deflate(text), rsv1=True))
    assert message.payload == text


def test_server_deflate_is_a_standalone_raw_deflate_stream() -> None:
    text = b"y" * 5000
    compressed = wire.deflate(text)
    assert len(compressed) < 100
    # What a browser does with no context takeover: a fresh inflater per message.
    assert zlib.decompressobj(-15).decompress(compressed + b"\x00\x00\xff\xff") == text


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (bytes((0x81, 0x05)) + b"hello", 1002),  # unmasked client frame
        (client_frame(b"x", rsv1=True), 1002),  # compressed without negotiation
        (client_frame(b"x" * 2000), 1009),  # over max_size
        (client_frame(b"x", opcode=wire.OP_CONTINUATION), 1002),
        (client_frame(b"x" * 126, opcode=wire.OP_PING), 1002),  # control frame too long
    ],
)
def test_protocol_violations_name_a_close_code(data: bytes, code: int) -> None:
    reader = wire.FrameReader(max_size=1000)
    with pytest.raises(wire.ProtocolError) as err:
        reader.feed(data)
    assert err.value.code == code


def test_deflate_bomb_is_refused() -> None:
    bomb = wire.deflate(b"\0" * 5_000_000)
    reader = wire.FrameReader(max_size=1 << 20, deflate=True)
    with pytest.raises(wire.ProtocolError) as err:
        reader.feed(client_frame(bomb, rsv1=True))
    assert err.value.code == 1009


def test_offers_deflate() -> None:
    assert wire.offers_deflate("permessage-deflate; client_max_window_bits")
    assert wire.offers_deflate("x-webkit-deflate-frame, permessage-deflate")
    assert not wire.offers_deflate("x-webkit-deflate-frame")
    assert not wire.offers_deflate("")


@pytest.mark.parametrize(
    ("text", "kind", "namespace", "ack_id", "data"),
    [
        ("0", "0", "/", None, ""),
        ('0{"token":"t"}', "0", "/", None, '{"token":"t"}'),
        ('2["a",{}]', "2", "/", None, '["a",{}]'),
        ('217["a",{}]', "2", "/", 17, '["a",{}]'),
        ('0/admin,{"x":1}', "0", "/admin", None, '{"x":1}'),
        ("1", "1", "/", None, ""),
    ],
)
def test_parse_socketio_packets(
    text: str, kind: str, namespace: str, ack_id: int | None, data: str
) -> None:
    assert wire.parse_sio(text) == wire.SioPacket(kind, namespace, ack_id, data)


def test_parse_refuses_unknown_packet_types() -> None:
    with pytest.raises(ValueError, match="unknown packet type"):
        wire.parse_sio("9")
