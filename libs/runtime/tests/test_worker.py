"""The worker runner against a real nats-server: replies, refusals, no responders."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest_asyncio

from chat_contracts import DomainError, ErrorCode, RetryableError
from chat_contracts.bus import Actor, Command, MembersQuery
from chat_runtime.bus import Bus
from chat_runtime.worker import Router, Worker

ACTOR = Actor(user_id="alice", name="Alice")


class Echo(msgspec.Struct):
    group_id: str


@pytest_asyncio.fixture
async def bus(nats_url: str) -> AsyncIterator[Bus]:
    bus = await Bus.connect(nats_url, name="test")
    router = Router("demo")

    async def echo(cmd: Command[MembersQuery]) -> Echo:
        if cmd.payload.group_id == "missing":
            raise DomainError(ErrorCode.NOT_FOUND, "no such group", field="groupId")
        if cmd.payload.group_id == "busy":
            raise RetryableError(ErrorCode.UNAVAILABLE, "busy", retry_after_ms=250)
        if cmd.payload.group_id == "boom":
            raise RuntimeError("bug")
        return Echo(group_id=cmd.payload.group_id + ":" + cmd.actor.user_id)

    router.add("echo", MembersQuery, echo)
    worker = Worker(bus, router)
    await worker.start()
    yield bus
    await worker.stop()
    await bus.close()


async def test_ok_reply_carries_the_result(bus: Bus) -> None:
    reply = await bus.command("demo", "echo", ACTOR, MembersQuery(group_id="g1"))
    assert reply.status == "ok"
    assert reply.result is not None
    assert msgspec.msgpack.decode(reply.result) == {"group_id": "g1:alice"}


async def test_refusals_become_error_and_retry_replies(bus: Bus) -> None:
    missing = await bus.command("demo", "echo", ACTOR, MembersQuery(group_id="missing"))
    assert (missing.status, missing.code, missing.field) == ("error", "NOT_FOUND", "groupId")
    busy = await bus.command("demo", "echo", ACTOR, MembersQuery(group_id="busy"))
    assert (busy.status, busy.code, busy.retry_after) == ("retry", "UNAVAILABLE", 250)
    boom = await bus.command("demo", "echo", ACTOR, MembersQuery(group_id="boom"))
    assert (boom.status, boom.code) == ("error", "INTERNAL")
    unknown = await bus.command("demo", "nope", ACTOR, MembersQuery(group_id="g"))
    assert unknown.code == "NOT_FOUND"


async def test_a_payload_of_the_wrong_shape_is_a_validation_error(bus: Bus) -> None:
    reply = await bus.command("demo", "echo", ACTOR, {"groupId": 5})
    assert reply.code == "VALIDATION_ERROR"


async def test_no_responders_is_a_retry_not_a_hang(bus: Bus) -> None:
    reply = await bus.command("nobody", "home", ACTOR, MembersQuery(group_id="g"), timeout_ms=2000)
    assert reply.status == "retry"
    assert reply.code == "UNAVAILABLE"
    assert reply.retry_after is not None
    assert reply.retry_after > 0
