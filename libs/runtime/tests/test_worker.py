"""The worker runner against a real nats-server: replies, refusals, no responders."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest
import pytest_asyncio
from redis.exceptions import ConnectionError as RedisConnectionError

from chat_contracts import DomainError, ErrorCode, RetryableError
from chat_contracts.bus import Actor, Command, MembersQuery
from chat_runtime.bus import Bus, QueryError, result_decoder
from chat_runtime.worker import Router, Worker, cancel_tasks

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
        if cmd.payload.group_id == "redis-away":
            raise RedisConnectionError("No master found for 'mymaster'")
        return Echo(group_id=cmd.payload.group_id + ":" + cmd.actor.user_id)

    router.internal("echo", MembersQuery, echo)
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
    # Redis away (a failover under way): a retry, not an internal error.
    away = await bus.command("demo", "echo", ACTOR, MembersQuery(group_id="redis-away"))
    assert (away.status, away.code, away.retry_after) == ("retry", "UNAVAILABLE", 1000)
    unknown = await bus.command("demo", "nope", ACTOR, MembersQuery(group_id="g"))
    assert (unknown.status, unknown.code) == ("error", "NOT_IMPLEMENTED")


async def test_a_payload_of_the_wrong_shape_is_a_validation_error(bus: Bus) -> None:
    reply = await bus.command("demo", "echo", ACTOR, {"groupId": 5})
    assert reply.code == "VALIDATION_ERROR"


async def test_no_responders_is_a_retry_not_a_hang(bus: Bus) -> None:
    reply = await bus.command("nobody", "home", ACTOR, MembersQuery(group_id="g"), timeout_ms=2000)
    assert reply.status == "retry"
    assert reply.code == "UNAVAILABLE"
    assert reply.retry_after is not None
    assert reply.retry_after > 0


# --- Bus.query: one typed request for the internal queries ------------------------


class Wrong(msgspec.Struct):
    group_id: int


async def test_query_returns_the_typed_result(bus: Bus) -> None:
    echoed = await bus.query("cmd.demo.echo", MembersQuery(group_id="g1"), Echo, actor=ACTOR)
    assert echoed == Echo(group_id="g1:alice")


async def test_query_raises_refusals_as_the_service_gave_them(bus: Bus) -> None:
    with pytest.raises(DomainError) as refused:
        await bus.query("cmd.demo.echo", MembersQuery(group_id="missing"), Echo, actor=ACTOR)
    assert (refused.value.code, refused.value.field) == (ErrorCode.NOT_FOUND, "groupId")
    with pytest.raises(RetryableError) as busy:
        await bus.query("cmd.demo.echo", MembersQuery(group_id="busy"), Echo, actor=ACTOR)
    assert (busy.value.code, busy.value.retry_after_ms) == (ErrorCode.UNAVAILABLE, 250)
    with pytest.raises(RetryableError) as nobody:
        await bus.query("cmd.nobody.home", MembersQuery(group_id="g"), Echo, actor=ACTOR)
    assert nobody.value.code is ErrorCode.UNAVAILABLE


async def test_query_of_an_unreadable_result_is_a_query_error(bus: Bus) -> None:
    with pytest.raises(QueryError, match="unreadable Wrong"):
        await bus.query("cmd.demo.echo", MembersQuery(group_id="g1"), Wrong, actor=ACTOR)


def test_result_decoders_are_built_once_per_type() -> None:
    assert result_decoder(Echo) is result_decoder(Echo)
    assert result_decoder(Echo) is not result_decoder(Wrong)


async def test_cancel_tasks_ends_a_task_that_swallowed_its_cancellation() -> None:
    """As a sweep loop does when Python 3.11's wait_for drops the cancellation."""
    swallowed = 0

    async def sweep_loop() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # the loop goes on, as if the round had just completed

    stubborn = asyncio.ensure_future(sweep_loop())
    polite = asyncio.ensure_future(asyncio.sleep(60))
    await asyncio.sleep(0.02)
    await asyncio.wait_for(cancel_tasks([stubborn, polite]), 1.0)
    assert stubborn.cancelled()
    assert polite.cancelled()
    assert swallowed == 1
