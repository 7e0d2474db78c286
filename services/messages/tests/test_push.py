"""`PushBatcher` against a real nats-server with JetStream: every batch is stored once, in
send order, even when the server is down while it is written."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest
import pytest_asyncio
from nats.js import api

from chat_contracts import subjects
from chat_contracts.bus import MessagePush, MessagePushes
from chat_messages import push
from chat_messages.push import PushBatcher
from chat_runtime.bus import Bus
from chat_runtime.jetstream import ensure_push_stream, publish_durably
from chat_testkit.probes import tasks_running
from chat_testkit.servers import Missing, NatsServer

_pushes = msgspec.msgpack.Decoder(MessagePushes)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of this test alone (the test stops and restarts it)."""
    try:
        server = NatsServer(tmp_path)
    except Missing as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest_asyncio.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[Bus]:
    connected = await Bus.connect(nats_server.url, name="push-test")
    await ensure_push_stream(connected)
    yield connected
    await connected.close()


def event(n: int) -> MessagePush:
    return MessagePush(
        message_id=f"m_{n:04d}",
        chat_id="g_1",
        sender_id="u_1",
        sender_name="Ann",
        type="TEXT",
        content=f"text {n}",
    )


async def stored(bus: Bus) -> list[list[str]]:
    """The message ids of each batch in the stream, in stream order."""
    js = bus.nc.jetstream()
    info = await js.stream_info(subjects.PUSH_STREAM)
    batches = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        raw = await js.get_msg(subjects.PUSH_STREAM, seq)
        assert raw.data is not None
        batches.append([e.message_id for e in _pushes.decode(raw.data).events])
    return batches


async def test_batches_written_while_the_server_is_down_are_stored_once_in_order(
    bus: Bus, nats_server: NatsServer
) -> None:
    pushes = PushBatcher(bus, max_delay_s=0.01)
    for n in range(3):
        pushes.add(event(n))
    await pushes.flush()
    port = nats_server.port
    await asyncio.to_thread(nats_server.stop)
    for n in range(3, 6):
        pushes.add(event(n))
    await asyncio.sleep(0.05)  # the timer fires: the batch is written into a dead server
    for n in range(6, 9):
        pushes.add(event(n))
    await asyncio.sleep(2.5)  # at least one PubAck timeout: the write is sent again
    restarted = await asyncio.to_thread(NatsServer, nats_server.workdir, port)
    nats_server.proc, nats_server.log = restarted.proc, restarted.log
    await pushes.close()

    batches = await stored(bus)
    ids = [i for batch in batches for i in batch]
    assert ids == [f"m_{n:04d}" for n in range(9)], batches


async def test_close_gives_up_on_a_dead_stream_and_leaves_no_write_running(
    bus: Bus,
    nats_server: NatsServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(push, "CLOSE_GIVE_UP_S", 0.5)
    pushes = PushBatcher(bus, max_delay_s=0.01)
    port = nats_server.port
    await asyncio.to_thread(nats_server.stop)
    pushes.add(event(1))
    await asyncio.sleep(0.05)  # the timer fires: a write into a dead server, retried on
    pushes.add(event(2))
    started = asyncio.get_running_loop().time()
    await pushes.close()
    assert asyncio.get_running_loop().time() - started < 0.5 + 1.0
    assert "push batches not written" in caplog.text
    assert tasks_running("PushBatcher.flush") == []
    # The fixture's bus closes against a live server.
    restarted = await asyncio.to_thread(NatsServer, nats_server.workdir, port)
    nats_server.proc, nats_server.log = restarted.proc, restarted.log
    # nats-py offers no awaitable reconnect (flush() raises while reconnecting): poll.
    async with asyncio.timeout(10):
        while not bus.nc.is_connected:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_a_write_sent_twice_with_one_id_is_stored_once(bus: Bus) -> None:
    data = msgspec.msgpack.encode(MessagePushes(events=[event(1)]))
    for _ in range(2):  # a retry after a lost PubAck
        assert await publish_durably(bus, subjects.MESSAGE_PUSH, data, "m_0001+1")
    assert await stored(bus) == [["m_0001"]]


async def test_a_memory_stream_lost_in_a_restart_is_made_again(
    bus: Bus, nats_server: NatsServer
) -> None:
    js = bus.nc.jetstream()
    await js.delete_stream(subjects.PUSH_STREAM)
    data = msgspec.msgpack.encode(MessagePushes(events=[event(2)]))
    assert await publish_durably(bus, subjects.MESSAGE_PUSH, data, "m_0002+1", storage="memory")
    info = await js.stream_info(subjects.PUSH_STREAM)
    assert info.config.storage == api.StorageType.MEMORY
    assert await stored(bus) == [["m_0002"]]
