"""`Publisher.to_users` against a real nats-server: one message for many users."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
import pytest_asyncio
from nats.aio.msg import Msg

from chat_contracts import server, subjects
from chat_contracts.bus import Fanout
from chat_runtime.bus import Bus, Publisher
from chat_testkit.servers import Missing, NatsServer

_fanout = msgspec.msgpack.Decoder(Fanout)
END = "rt.test.end"


class SmallPayloadBus(Bus):
    """A bus whose server would accept only 2,000-byte messages."""

    @property
    def max_payload(self) -> int:
        return 2_000


class Seen:
    """Every message on `rt.>` with its size, up to the `END` marker."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, int, Fanout]] = []
        self.ended = asyncio.Event()

    async def on(self, msg: Msg) -> None:
        if msg.subject == END:
            self.ended.set()
        else:
            self.messages.append((msg.subject, len(msg.data), _fanout.decode(msg.data)))


@pytest_asyncio.fixture
async def listener(nats_url: str) -> AsyncIterator[tuple[Bus, Seen]]:
    bus = await Bus.connect(nats_url, name="listener")
    seen = Seen()
    await bus.subscribe("rt.>", seen.on)
    await bus.flush()
    yield bus, seen
    await bus.close()


def _added(user_id: str) -> tuple[str, msgspec.Struct]:
    event = server.GroupMemberAdded(group_id="g_1", user_id=user_id, added_by="u00", role="MEMBER")
    return "group:member:added", event


async def _publish(bus: Bus, users: list[str], events: list[tuple[str, msgspec.Struct]]) -> None:
    await Publisher(bus).to_users(users, events, join=["g_1"])
    await bus.publish(END, b"")


async def test_many_users_get_one_message_with_every_event(
    nats_url: str, listener: tuple[Bus, Seen]
) -> None:
    _, seen = listener
    users = [f"u{i:02d}" for i in range(50)]
    bus = await Bus.connect(nats_url, name="publisher")
    await _publish(bus, users, [_added(u) for u in users])
    await asyncio.wait_for(seen.ended.wait(), timeout=5)
    await bus.close()
    assert len(seen.messages) == 1
    subject, _, fanout = seen.messages[0]
    assert subject == subjects.USERS_FANOUT
    assert fanout.users == users
    assert fanout.join == ["g_1"]
    names = [fanout.event, *(m.event for m in fanout.more)]
    assert names == ["group:member:added"] * 50
    payloads = [fanout.data, *(m.data for m in fanout.more)]
    assert [msgspec.json.decode(d)["userId"] for d in payloads] == users


async def test_a_list_too_long_for_one_message_is_split_with_every_event_in_each(
    nats_url: str, listener: tuple[Bus, Seen]
) -> None:
    _, seen = listener
    users = [f"user-{i:03d}".ljust(60, "x") for i in range(64)]
    bus = await SmallPayloadBus.connect(nats_url, name="publisher")
    events = [_added("u01"), _added("u02"), _added("u03")]
    await _publish(bus, users, events)
    await asyncio.wait_for(seen.ended.wait(), timeout=5)
    await bus.close()
    assert len(seen.messages) > 1
    assert all(size <= 2_000 for _, size, _ in seen.messages)
    # Every user exactly once, in order; every part carries all three events.
    assert [u for _, _, f in seen.messages for u in f.users] == users
    for _, _, fanout in seen.messages:
        assert [msgspec.json.decode(m.data)["userId"] for m in fanout.more] == ["u02", "u03"]
        assert fanout.join == ["g_1"]


async def test_an_id_outside_the_alphabet_is_refused_before_publishing(
    nats_url: str, listener: tuple[Bus, Seen]
) -> None:
    _, seen = listener
    bus = await Bus.connect(nats_url, name="publisher")
    with pytest.raises(ValueError, match="user id"):
        await Publisher(bus).to_users(["bob", "*"], [_added("bob")])
    await bus.publish(END, b"")
    await asyncio.wait_for(seen.ended.wait(), timeout=5)
    await bus.close()
    assert seen.messages == []


# --- Bus.flush against a tracing nats-server ----------------------------------------
#
# `Bus.flush` calls nats-py's private `Client._flush_pending(force_flush=True)` before its
# PING (nats-py 2.16 writes the PING past the pending buffer). libs/runtime/pyproject.toml
# pins nats-py to the range checked here; this test fails loudly when that changes.

FLUSH_INTERNALS_CHANGED = (
    "nats-py's flush internals changed (Bus.flush relies on Client._flush_pending); "
    "re-check bus.py before moving the nats-py pin in libs/runtime/pyproject.toml"
)


async def test_flush_returns_only_after_the_server_read_what_was_sent_before_it(
    tmp_path: Path,
) -> None:
    config = tmp_path / "trace.conf"
    config.write_text("trace: true\n")  # the server logs every protocol line it reads
    try:
        server = NatsServer(tmp_path, config=config)
    except Missing as exc:
        pytest.skip(str(exc))
    bus = await Bus.connect(server.url, name="flush-probe")
    try:

        async def ignore(msg: Msg) -> None:
            del msg

        assert hasattr(bus.nc, "_flush_pending"), FLUSH_INTERNALS_CHANGED
        # No await yields between the SUB and the PING: with nats-py's flush alone the
        # SUB still sits in the client's buffer when the PING is written.
        await bus.subscribe("probe.flush", ignore)
        await bus.flush()
        read = server.log.read_text().splitlines()
    finally:
        await bus.close()
        server.stop()
    mine = [line for line in read if "flush-probe" in line and "<<- [" in line]
    sub = next(i for i, line in enumerate(mine) if "<<- [SUB probe.flush" in line)
    pings = [i for i, line in enumerate(mine) if "<<- [PING]" in line]
    # The PING whose PONG ended flush() is the last one the server read before we looked;
    # the SUB must be ahead of it.
    assert pings, mine
    assert sub < pings[-1], mine
