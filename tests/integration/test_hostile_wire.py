"""Hostile bytes below the events: the raw WebSocket, Engine.IO and Socket.IO layers of
the gateway's lean server (property-based, one fresh connection per example).

Each example authenticates a raw socket, writes a sequence of frames hypothesis built
(random opcodes, reserved bits, unmasked frames, lengths past the limit, invalid UTF-8
and lone surrogates, binary where text is expected, fragments with control frames in
between or another message interleaved, Engine.IO and Socket.IO packets with odd
types, namespaces, ack ids and JSON), then a well-formed probe event. The server must
either answer the probe with a well-formed ack (the socket stayed usable) or have
closed the connection with a close frame whose code names a client fault (1000, 1001,
1002, 1003, 1007, 1008, 1009) - never hang, never 1011, never a bare TCP reset. The
gateway logs no traceback, keeps its memory, and a bystander's socket still works.

`CHAT_FUZZ_EXAMPLES` sets the examples per test (default 40; `./taskw soak`: 500).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import struct
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from chat_runtime.memory import rss_kib
from chat_testkit.probes import LogMark
from chat_testkit.rawws import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RawSocket,
    client_frame,
)
from chat_testkit.stack import Stack
from tests.integration.conftest import Connect, cmid

EXAMPLES = int(os.environ.get("CHAT_FUZZ_EXAMPLES", "40"))
#: Close codes that mean "the client broke the protocol or left" (RFC 6455 7.4.1).
CLIENT_FAULT_CODES = {1000, 1001, 1002, 1003, 1007, 1008, 1009}
PROBE_ID = 987_654
#: The server closed while bytes of the example were still unread on its side: its
#: kernel answered them with RST and the close frame was lost (the client sees 1006).
#: Since the server half-closes and reads on (RFC 6455 7.1.1, lean.py) this fails,
#: unless the client itself sent a close frame and then more bytes (its own fault).
RESET = "reset before the close frame arrived"
OUTCOMES: Counter[str] = Counter()
#: One loopback source address per connection: the per-address handshake limit
#: (10/s) is for clients, not for this test's hundreds of connections.
_SOURCES = itertools.cycle(f"127.0.{b}.{c}" for b in range(1, 4) for c in range(2, 250))

#: Each example is one connection of up to 6 s (a probe nobody answers) and at most 20 s
#: (`_attack`): 40 examples took 63 s on a quiet machine and passed the suite's 120 s
#: per test under load only sometimes; 500 under `./taskw soak` need ~15 min.
pytestmark = pytest.mark.timeout(60 + 8 * EXAMPLES)

SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    # No shrinking: each run of an example is a connection with timeouts of seconds;
    # the failing example is reported as generated.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

INVALID_UTF8 = [
    b"\xff",
    b"\xc0\xaf",  # overlong "/"
    b"\xed\xa0\x80",  # a lone surrogate (U+D800) as UTF-8 bytes
    b"\xf4\x90\x80\x80",  # past U+10FFFF
    b'42["groups:list",{"x":"\xe2\x82"}]',  # truncated sequence inside an event
]
SIO_PREFIXES = ["0", "1", "2", "3", "4", "5", "6", "7", "9", "", "/", "/admin,", "/x"]


def sio_packets() -> st.SearchStrategy[bytes]:
    """Engine.IO message packets carrying odd Socket.IO packets."""
    ack_ids = st.sampled_from(["", "1", "007", "99999999999999999999999", "-1"])
    data = st.one_of(
        st.text(max_size=40),
        st.sampled_from(
            [
                '["groups:list",{}]',
                '["groups:list"',
                "[" * 5000,
                '[1e999,{"a":' * 300,
                '["message:send",{"clientMessageId":"' + "x" * 70_000 + '"}]',
                '["\\ud800",{}]',
                '["groups:list",{"n":123456789012345678901234567890}]',
                "null",
                "[]",
                "[null,{}]",
            ]
        ),
    )
    packet = st.builds(
        lambda eio, sio, ack, body: f"{eio}{sio}{ack}{body}".encode(),
        st.sampled_from(["4", "4", "4", "2", "3", "5", "6", "8", ""]),
        st.sampled_from(SIO_PREFIXES),
        ack_ids,
        data,
    )
    return packet


payloads = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(INVALID_UTF8),
    sio_packets(),
)


@st.composite
def frames(draw: st.DrawFn) -> tuple[int, bytes, bytes]:
    """One client frame, possibly broken: its opcode, payload and bytes."""
    opcode = draw(
        st.one_of(
            st.sampled_from([OP_TEXT, OP_TEXT, OP_TEXT, OP_BINARY, OP_PING, OP_PONG, OP_CONT]),
            st.integers(0, 15),
        )
    )
    payload = draw(payloads)
    if opcode >= OP_CLOSE:
        payload = payload[: draw(st.sampled_from([125, 125, 126, 200]))]
    return (
        opcode,
        payload,
        client_frame(
            payload,
            opcode=opcode,
            fin=draw(st.booleans()) if opcode in (OP_TEXT, OP_BINARY, OP_CONT) else True,
            rsv=draw(st.sampled_from([0, 0, 0, 0, 1, 2, 4])),
            masked=draw(st.sampled_from([True] * 9 + [False])),
        ),
    )


@st.composite
def fragmented_event(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A valid event split into fragments, with pings (and maybe another message) between."""
    text = ('42["groups:list",{"note":"' + draw(st.text(max_size=30)) + '"}]').encode()
    cuts = sorted(draw(st.lists(st.integers(1, max(1, len(text) - 1)), max_size=4, unique=True)))
    parts = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    out = b""
    interleaved = False
    for i, part in enumerate(parts):
        opcode = OP_TEXT if i == 0 else OP_CONT
        out += client_frame(part, opcode=opcode, fin=i == len(parts) - 1)
        if i < len(parts) - 1:
            extra = draw(st.sampled_from(["none", "ping", "ping", "pong", "interleave"]))
            if extra == "ping":
                out += client_frame(b"p", opcode=OP_PING)
            elif extra == "pong":
                out += client_frame(b"", opcode=OP_PONG)
            elif extra == "interleave":
                out += client_frame(b'42["groups:list",{}]', opcode=OP_TEXT)
                interleaved = True
    return out, interleaved


@pytest.fixture(scope="module")
def wire_marks(stack: Stack) -> dict[str, Any]:
    gateway = stack.processes["gateway-a"]
    return {"log": LogMark.now(gateway), "rss": rss_kib(gateway.proc.pid), "proc": gateway}


async def _attack(stack: Stack, token: str, data: bytes) -> str:
    """Authenticate, write `data`, probe; what became of the connection (a whole
    attempt past 20 s is a hang too)."""
    try:
        return await asyncio.wait_for(_attack_inner(stack, token, data), 20)
    except TimeoutError:
        return "hang (20 s)"


async def _attack_inner(stack: Stack, token: str, data: bytes) -> str:
    sock = await RawSocket.open(stack.gateway_url(0), next(_SOURCES))
    try:
        answer = await sock.connect(token)
        assert answer.startswith("40"), answer
        sock.send(data)
        probed = False
        while True:
            # The probe goes after a pause: written together with a frame the server
            # closes on, it would sit unread in the server's socket, and closing a
            # socket with unread data makes the kernel send RST, which can destroy the
            # close frame on its way (see RESET below).
            frame = await sock.frame(timeout=6 if probed else 0.2)
            if frame is None and not probed and not sock.ended:
                sock.send_text(f'42{PROBE_ID}["groups:list",{{}}]')
                probed = True
                continue
            if frame is None:
                return RESET if sock.ended else "hang"
            if frame.opcode == OP_CLOSE:
                return f"closed {frame.close_code}"
            if frame.opcode != OP_TEXT:
                continue
            text = frame.payload.decode()
            if text == "2":
                sock.send_text("3")
            elif text.startswith(f"43{PROBE_ID}["):
                ack = json.loads(text[len(f"43{PROBE_ID}") :])[0]
                return "probe answered ok" if ack.get("status") == "ok" else f"probe {ack}"
            elif text.startswith("43"):
                ack = json.loads(text[text.index("[") :])[0]
                assert ack.get("status") in ("ok", "error", "retry"), text
                assert ack.get("code") != "INTERNAL", text
    except TimeoutError:
        return "hang"
    finally:
        await sock.close()


def _left_namespace(payloads: Iterable[bytes]) -> bool:
    """Whether the client sent a Socket.IO DISCONNECT of the default namespace: the
    server then, rightly, ignores its events (the probe gets no answer)."""
    return any(p.startswith(b"41") for p in payloads)


def _judge(outcome: str, left: bool = False, client_closed: bool = False) -> None:
    if left and outcome.startswith("hang"):
        outcome = "left the namespace (probe ignored)"
        OUTCOMES[outcome] += 1
        return
    OUTCOMES[outcome if not outcome.startswith("probe {") else "probe refused"] += 1
    if outcome == "probe answered ok":
        return
    if outcome == RESET and client_closed:
        return
    if outcome.startswith("closed "):
        code = outcome.removeprefix("closed ")
        assert code != "None", outcome
        assert int(code) in CLIENT_FAULT_CODES, outcome
        return
    raise AssertionError(outcome)


@SETTINGS
@given(sequence=st.lists(frames(), min_size=1, max_size=5))
async def test_broken_frames_are_answered_or_closed_with_a_client_fault_code(
    stack: Stack, wire_marks: dict[str, Any], sequence: list[tuple[int, bytes, bytes]]
) -> None:
    data = b"".join(frame for _, _, frame in sequence)
    outcome = await _attack(stack, stack.token("wire-fuzzer"), data)
    # A client's own close frame without a status is answered by one without (7.1.5).
    client_closed = any(opcode == OP_CLOSE for opcode, _, _ in sequence)
    if outcome == "closed None" and client_closed:
        outcome = "closed 1000"
    left = _left_namespace(p for op, p, _ in sequence if op == OP_TEXT)
    _judge(outcome, left=left, client_closed=client_closed)


@SETTINGS
@given(case=fragmented_event())
async def test_fragments_with_control_frames_between_are_reassembled(
    stack: Stack, wire_marks: dict[str, Any], case: tuple[bytes, bool]
) -> None:
    data, interleaved = case
    outcome = await _attack(stack, stack.token("wire-fragments"), data)
    _judge(outcome)
    # Control frames may come between fragments (RFC 6455 5.4); another message may not.
    assert outcome == ("closed 1002" if interleaved else "probe answered ok"), outcome


@SETTINGS
@given(data=st.lists(sio_packets(), min_size=1, max_size=4))
async def test_odd_engineio_and_socketio_packets(
    stack: Stack, wire_marks: dict[str, Any], data: list[bytes]
) -> None:
    frames_ = b"".join(client_frame(p) for p in data)
    _judge(await _attack(stack, stack.token("wire-packets"), frames_), left=_left_namespace(data))


#: Connections in the close-code test: before the fix 4 of 30 saw a reset instead of
#: the code (so 50 pass by chance about once in 1,300 runs).
CLOSE_ROUNDS = 50


async def test_the_close_code_reaches_the_client_while_its_bytes_are_in_flight(
    stack: Stack, wire_marks: dict[str, Any]
) -> None:
    """RFC 6455 7.1.1: a binary message (1003) followed, in the same write, by 2 MiB
    the server has not read when it decides to close. Closing TCP at once made the
    kernel answer the unread bytes with RST, and the client's stack dropped the close
    frame it had buffered (it saw 1006). The server half-closes instead and reads on:
    the client gets 1003 every time, then the end of the stream, and answers with its
    close frame."""
    trailing = b"".join(client_frame(b"4" + b"x" * 8191) for _ in range(256))
    outcomes: Counter[str] = Counter()
    for _ in range(CLOSE_ROUNDS):
        sock = await RawSocket.open(stack.gateway_url(0), next(_SOURCES))
        try:
            assert (await sock.connect(stack.token("close-code"))).startswith("40")
            sock.send(client_frame(b"binary", opcode=OP_BINARY) + trailing)
            code = None
            while (frame := await sock.frame(timeout=10)) is not None:
                if frame.opcode == OP_CLOSE:
                    code = frame.close_code
                    break
            outcomes["reset" if code is None else f"closed {code}"] += 1
            # The server's FIN follows its close frame (the client's answer ends it).
            assert code is None or (await sock.frame(timeout=5) is None and sock.ended)
            if code is not None:
                sock.send(client_frame(struct.pack("!H", code), opcode=OP_CLOSE))
        finally:
            await sock.close()
    assert outcomes == Counter({"closed 1003": CLOSE_ROUNDS}), outcomes


async def test_after_the_wire_fuzzing_the_gateway_is_clean(
    stack: Stack, wire_marks: dict[str, Any], connect: Connect, uid: Callable[[str], str]
) -> None:
    print(f"hostile frames: {sum(OUTCOMES.values())} connections; outcomes {dict(OUTCOMES)}")
    assert wire_marks["log"].tracebacks() == [], wire_marks["log"].tracebacks()[0]
    grown = rss_kib(wire_marks["proc"].proc.pid) - wire_marks["rss"]
    assert grown < 40 * 1024, f"gateway-a grew {grown} KiB"
    a, b = uid("wire-calm-a"), uid("wire-calm-b")
    calm_a, calm_b = await connect(a, gateway=0), await connect(b, gateway=1)
    payload = {"clientMessageId": cmid(), "targetUserId": b, "content": "still here"}
    assert (await calm_a.call("message:send", payload))["status"] == "ok"
    assert (await calm_b.wait_for("message:new"))["content"] == "still here"
