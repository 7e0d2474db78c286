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


def test_reader_parses_one_message_at_a_time_and_keeps_the_rest_as_bytes() -> None:
    frames = [client_frame(b"a"), client_frame(b"b", fin=False), client_frame(b"c", opcode=0)]
    frames.append(client_frame(b"d"))
    reader = wire.FrameReader(max_size=1 << 20)
    reader.push(b"".join(frames))
    first = reader.next_message()
    assert first is not None
    assert first.payload == b"a"
    assert reader.buffered == sum(len(f) for f in frames[1:])
    second = reader.next_message()  # two fragments make one message
    assert second is not None
    assert second.payload == b"bc"
    assert reader.buffered == len(frames[3])
    third = reader.next_message()
    assert third is not None
    assert third.payload == b"d"
    assert reader.next_message() is None
    assert reader.buffered == 0


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


# --- issue 6: fragments, RFC 6455 validation, oversize messages, packet types ---------


def test_fragments_accumulate_into_one_message() -> None:
    reader = wire.FrameReader(max_size=1 << 20)
    data = client_frame(b"4", fin=False)
    data += b"".join(client_frame(b"2", opcode=wire.OP_CONTINUATION, fin=False) for _ in range(3))
    data += client_frame(b'["a"]', opcode=wire.OP_CONTINUATION)
    [message] = reader.feed(data)
    assert message.text == '4222["a"]'


def test_fragments_per_message_are_capped() -> None:
    # 900k one-byte fragments once cost ~50 MB of per-fragment objects; now the cap
    # stops the message long before that.
    reader = wire.FrameReader(max_size=1 << 20)
    reader.feed(client_frame(b"4", fin=False))
    one = client_frame(b"x", opcode=wire.OP_CONTINUATION, fin=False)
    with pytest.raises(wire.ProtocolError) as err:
        reader.feed(one * (wire.MAX_FRAGMENTS + 1))
    assert err.value.code == wire.CloseCode.POLICY_VIOLATION


def test_empty_non_final_fragments_are_refused_beyond_a_few() -> None:
    reader = wire.FrameReader(max_size=1 << 20)
    reader.feed(client_frame(b"4", fin=False))
    empty = client_frame(b"", opcode=wire.OP_CONTINUATION, fin=False)
    reader.feed(empty * wire.MAX_EMPTY_FRAGMENTS)
    with pytest.raises(wire.ProtocolError) as err:
        reader.feed(empty)
    assert err.value.code == wire.CloseCode.POLICY_VIOLATION


def test_invalid_utf8_in_a_text_message_closes_with_1007() -> None:
    reader = wire.FrameReader(max_size=1000)
    with pytest.raises(wire.ProtocolError) as err:
        reader.feed(client_frame(b"42\xff\xfe"))
    assert err.value.code == 1007
    # Valid UTF-8 split across fragments is fine: the check runs on the whole message.
    reader = wire.FrameReader(max_size=1000)
    snow = "☃".encode()
    data = client_frame(snow[:1], fin=False) + client_frame(snow[1:], opcode=0)
    assert reader.feed(data)[0].text == "☃"


@pytest.mark.parametrize("opcode", [0xB, 0xC, 0xD, 0xE, 0xF, 0x3, 0x7])
def test_reserved_opcodes_close_with_1002(opcode: int) -> None:
    reader = wire.FrameReader(max_size=1000)
    with pytest.raises(wire.ProtocolError) as err:
        reader.feed(client_frame(b"", opcode=opcode))
    assert err.value.code == wire.CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize(
    "data",
    [
        client_frame(b"p", opcode=wire.OP_PING, rsv1=True),
        client_frame(b"", opcode=wire.OP_CLOSE, rsv1=True),
        client_frame(b"4", fin=False) + client_frame(b"0", opcode=0, rsv1=True),
    ],
    ids=["ping", "close", "continuation"],
)
def test_rsv1_on_control_or_continuation_frames_closes_with_1002(data: bytes) -> None:
    reader = wire.FrameReader(max_size=1000, deflate=True)
    with pytest.raises(wire.ProtocolError) as err:
        reader.feed(data)
    assert err.value.code == wire.CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"", 1005),
        (struct.pack("!H", 1000), 1000),
        (struct.pack("!H", 1001) + b"bye", 1001),
        (struct.pack("!H", 3000), 3000),
        (struct.pack("!H", 4999) + "☃".encode(), 4999),
    ],
)
def test_valid_close_frames_give_their_code(payload: bytes, code: int) -> None:
    assert wire.parse_close(payload) == code


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\x03", 1002),  # a 1-byte body
        (struct.pack("!H", 999), 1002),
        (struct.pack("!H", 1004), 1002),
        (struct.pack("!H", 1005), 1002),  # reserved: never sent
        (struct.pack("!H", 1006), 1002),
        (struct.pack("!H", 1015), 1002),
        (struct.pack("!H", 2999), 1002),
        (struct.pack("!H", 5000), 1002),
        (struct.pack("!H", 1000) + b"\xff", 1007),  # reason not UTF-8
    ],
)
def test_invalid_close_frames_are_protocol_errors(payload: bytes, code: int) -> None:
    with pytest.raises(wire.ProtocolError) as err:
        wire.parse_close(payload)
    assert err.value.code == code


def test_close_frame_reason_fits_a_control_frame() -> None:
    out = wire.close_frame(wire.CloseCode.POLICY_VIOLATION, "☃" * 100)
    assert out[0] == 0x88
    assert out[1] <= 125
    assert struct.unpack("!H", out[2:4])[0] == 1008
    out[4:].decode()  # cut on a character boundary
    assert wire.close_frame(wire.CloseCode.NO_STATUS) == b"\x88\x00"


def test_oversize_message_is_flagged_with_its_head_and_above_the_hard_limit_is_1009() -> None:
    reader = wire.FrameReader(max_size=1000, hard_limit=4000)
    text = b'4217["message:send",{"content":"' + b"x" * 2000 + b'"}]'
    [message] = reader.feed(client_frame(text))
    assert message.oversize
    assert message.text.startswith('4217["message:send"')
    assert len(message.payload) == wire.OVERSIZE_PREFIX
    with pytest.raises(wire.ProtocolError) as err:
        reader.feed(client_frame(b"x" * 4001))
    assert err.value.code == wire.CloseCode.MESSAGE_TOO_BIG


def test_oversize_deflated_message_is_flagged_and_a_bomb_past_the_hard_limit_is_1009() -> None:
    reader = wire.FrameReader(max_size=1000, deflate=True, hard_limit=4000)
    [message] = reader.feed(client_frame(wire.deflate(b"4212" + b"y" * 3000), rsv1=True))
    assert message.oversize
    assert message.text.startswith("4212yyy")
    with pytest.raises(wire.ProtocolError) as err:
        reader.feed(client_frame(wire.deflate(b"\0" * 5_000_000), rsv1=True))
    assert err.value.code == wire.CloseCode.MESSAGE_TOO_BIG


def test_fragmented_oversize_message_is_flagged() -> None:
    reader = wire.FrameReader(max_size=1000, hard_limit=4000)
    data = client_frame(b"4213" + b"z" * 800, fin=False)
    data += client_frame(b"z" * 800, opcode=wire.OP_CONTINUATION)
    [message] = reader.feed(data)
    assert message.oversize
    assert message.text.startswith("4213zz")


@pytest.mark.parametrize("text", ['51-["a",{"_placeholder":true,"num":0}]', '61-1[{"x":1}]'])
def test_binary_socketio_packets_are_refused_by_name(text: str) -> None:
    # Before: "51-" parsed as a BINARY_EVENT with ack id 1 and was silently dropped.
    with pytest.raises(wire.UnsupportedPacket, match="binary"):
        wire.parse_sio(text)


def test_ack_ids_are_ascii_digits_only() -> None:
    # "²" passes str.isdigit() but int() refuses it.
    packet = wire.parse_sio('2²["a"]')
    assert packet.ack_id is None
    assert packet.data == '²["a"]'
    with pytest.raises(ValueError, match="ack id"):
        wire.parse_sio("2" + "9" * 5000 + '["a"]')
