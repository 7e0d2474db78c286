"""Commands of one loop turn in one request, against a real nats-server and worker."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import msgspec
import pytest
import pytest_asyncio
from nats.aio.msg import Msg

from chat_contracts import DomainError, ErrorCode, subjects
from chat_contracts.bus import Actor, Command, MembersQuery
from chat_runtime.batch import CommandBatcher
from chat_runtime.bus import Bus
from chat_runtime.worker import Router, RouterError, Worker

ACTOR = Actor(user_id="alice", name="Alice")


class Echo(msgspec.Struct):
    group_id: str


class Recorder:
    """A handler that takes a random short time and records when each command ran."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[str] = []
        self.stored: dict[str, str] = {}

    async def handle(self, cmd: Command[MembersQuery]) -> Echo:
        key = cmd.payload.group_id
        if key == "bad":
            raise DomainError(ErrorCode.NOT_FOUND, "no such group", field="groupId")
        self.started.append(key)
        await asyncio.sleep(random.uniform(0, 0.005))
        self.finished.append(key)
        # Idempotent on the key before "_", like a clientMessageId: a repeat answers the first.
        first = self.stored.setdefault(key.split("_")[0], f"{key}:{cmd.origin_sid}")
        return Echo(group_id=first)


@pytest_asyncio.fixture
async def setup(nats_url: str) -> AsyncIterator[tuple[Bus, Recorder]]:
    bus = await Bus.connect(nats_url, name="test")
    router = Router("demo")
    recorder = Recorder()
    router.internal("echo", MembersQuery, recorder.handle)
    worker = Worker(bus, router)
    await worker.start()
    yield bus, recorder
    await worker.stop()
    await bus.close()


def _result(reply: object) -> str:
    assert reply.status == "ok", reply  # type: ignore[attr-defined]
    return str(msgspec.msgpack.decode(reply.result)["group_id"])  # type: ignore[attr-defined]


async def test_one_turn_is_one_request_with_one_reply_per_command(
    setup: tuple[Bus, Recorder],
) -> None:
    bus, _ = setup
    batcher = CommandBatcher(bus)

    def send(key: str, sid: str) -> asyncio.Future[object]:
        return asyncio.ensure_future(
            batcher.command(
                "demo", "echo", ACTOR, MembersQuery(group_id=key), origin_sid=sid, timeout_ms=5000
            )
        )

    sends = [send(f"m{i}", f"s{i % 5}") for i in range(40)]
    sends.append(send("bad", "s9"))
    replies = await asyncio.gather(*sends)
    assert (batcher.requests, batcher.commands) == (1, 41)
    # Every command got its own ack, in the caller's place, refusals included.
    assert [_result(r) for r in replies[:40]] == [f"m{i}:s{i % 5}" for i in range(40)]
    assert (replies[40].status, replies[40].code, replies[40].field) == (
        "error",
        "NOT_FOUND",
        "groupId",
    )


async def test_commands_of_one_socket_run_in_order(setup: tuple[Bus, Recorder]) -> None:
    bus, recorder = setup
    batcher = CommandBatcher(bus)
    sends = [
        batcher.command(
            "demo",
            "echo",
            ACTOR,
            MembersQuery(group_id=f"{sid}-{k}"),
            origin_sid=sid,
            timeout_ms=5000,
        )
        for k in range(10)
        for sid in ("a", "b", "c")
    ]
    await asyncio.gather(*sends)
    assert batcher.requests == 1
    for sid in ("a", "b", "c"):
        mine = [key for key in recorder.finished if key.startswith(sid + "-")]
        assert mine == [f"{sid}-{k}" for k in range(10)]
    # ... while different sockets ran side by side (their writes can commit together).
    assert recorder.started[:3] == ["a-0", "b-0", "c-0"]


async def test_a_repeated_key_in_one_batch_answers_the_first(setup: tuple[Bus, Recorder]) -> None:
    bus, _ = setup
    batcher = CommandBatcher(bus)
    replies = await asyncio.gather(
        *(
            batcher.command(
                "demo", "echo", ACTOR, MembersQuery(group_id=key), origin_sid=sid, timeout_ms=5000
            )
            for key, sid in (("dup_1", "x"), ("dup_2", "y"), ("dup_3", "x"))
        )
    )
    assert batcher.requests == 1
    assert {_result(r) for r in replies} == {_result(replies[0])}


async def test_a_lone_command_is_a_plain_request(setup: tuple[Bus, Recorder]) -> None:
    bus, _ = setup
    batcher = CommandBatcher(bus)
    seen: list[str] = []

    async def note(msg: Msg) -> None:
        seen.append(msg.subject)

    sub = await bus.subscribe(subjects.commands_of("demo"), note)
    await bus.flush()
    reply = await batcher.command(
        "demo", "echo", ACTOR, MembersQuery(group_id="solo"), timeout_ms=5000
    )
    await sub.unsubscribe()
    assert _result(reply) == "solo:None"
    assert seen == [subjects.command("demo", "echo")]


async def test_no_worker_answers_every_command_unavailable(nats_url: str) -> None:
    bus = await Bus.connect(nats_url, name="test")
    try:
        batcher = CommandBatcher(bus)
        replies = await asyncio.gather(
            *(
                batcher.command(
                    "nobody", "echo", ACTOR, MembersQuery(group_id=f"g{i}"), timeout_ms=500
                )
                for i in range(3)
            )
        )
        assert [(r.status, r.code) for r in replies] == [("retry", "UNAVAILABLE")] * 3
    finally:
        await bus.close()


def test_batch_is_a_reserved_action() -> None:
    async def handler(_cmd: Command[MembersQuery]) -> None:
        return None

    with pytest.raises(RouterError, match="reserved"):
        Router("demo").internal(subjects.BATCH_ACTION, MembersQuery, handler)


async def test_a_window_gathers_commands_of_several_turns(setup: tuple[Bus, Recorder]) -> None:
    bus, _ = setup
    batcher = CommandBatcher(bus, window_ms=200)

    async def send(key: str, after_s: float) -> str:
        await asyncio.sleep(after_s)
        reply = await batcher.command(
            "demo", "echo", ACTOR, MembersQuery(group_id=key), origin_sid=key, timeout_ms=5000
        )
        return _result(reply)

    # Three loop turns tens of ms apart, all inside the first command's 200 ms.
    results = await asyncio.gather(send("w1", 0), send("w2", 0.03), send("w3", 0.06))
    assert results == ["w1:w1", "w2:w2", "w3:w3"]
    assert (batcher.requests, batcher.commands) == (1, 3)


async def test_a_query_through_the_batch_is_typed_or_raises(setup: tuple[Bus, Recorder]) -> None:
    bus, _ = setup
    batcher = CommandBatcher(bus)
    found, refused = await asyncio.gather(
        batcher.query("demo", "echo", MembersQuery(group_id="q1"), Echo, actor=ACTOR),
        batcher.query("demo", "echo", MembersQuery(group_id="bad"), Echo, actor=ACTOR),
        return_exceptions=True,
    )
    assert batcher.requests == 1
    assert found == Echo(group_id="q1:None")
    assert isinstance(refused, DomainError)
    assert (refused.code, refused.field) == (ErrorCode.NOT_FOUND, "groupId")
