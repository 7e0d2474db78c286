"""What the worker runner reports: commands by outcome, latency, in-flight, the trace."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest_asyncio
from prometheus_client import REGISTRY

from chat_contracts import DomainError, ErrorCode
from chat_contracts.bus import Actor, Command, MembersQuery
from chat_runtime import trace
from chat_runtime.bus import Bus
from chat_runtime.service import timed
from chat_runtime.worker import Router, Worker

ACTOR = Actor(user_id="olga", name="Olga")
SUBJECT = "cmd.observed.echo"


class Seen(msgspec.Struct):
    trace_id: str | None
    user: str | None
    in_flight: float | None


@pytest_asyncio.fixture
async def bus(nats_url: str) -> AsyncIterator[Bus]:
    bus = await Bus.connect(nats_url, name="observed")
    router = Router("observed")

    async def echo(cmd: Command[MembersQuery]) -> Seen:
        if cmd.payload.group_id == "missing":
            raise DomainError(ErrorCode.NOT_FOUND, "no such group")
        in_flight = REGISTRY.get_sample_value("chat_worker_in_flight", {"domain": "observed"})
        return Seen(trace.current_trace_id(), trace.user.get(), in_flight)

    router.internal("echo", MembersQuery, echo)
    worker = Worker(bus, router)
    await worker.start()
    yield bus
    await worker.stop()
    await bus.close()


def count(outcome: str) -> float:
    labels = {"subject": SUBJECT, "outcome": outcome}
    return REGISTRY.get_sample_value("chat_worker_commands_total", labels) or 0.0


async def test_commands_are_counted_by_outcome_and_timed(bus: Bus) -> None:
    ok_before, error_before = count("ok"), count("error")
    timed_before = (
        REGISTRY.get_sample_value("chat_worker_command_seconds_count", {"subject": SUBJECT}) or 0
    )
    for group in ("a", "b", "missing"):
        await bus.command("observed", "echo", ACTOR, MembersQuery(group_id=group))
    assert count("ok") - ok_before == 2
    assert count("error") - error_before == 1
    timed_after = REGISTRY.get_sample_value(
        "chat_worker_command_seconds_count", {"subject": SUBJECT}
    )
    assert timed_after == timed_before + 3
    # Counted while handled, released after.
    assert REGISTRY.get_sample_value("chat_worker_in_flight", {"domain": "observed"}) == 0


async def test_the_handler_runs_in_the_senders_trace_and_the_reply_carries_it(bus: Bus) -> None:
    token = trace.begin()
    try:
        sender_trace = trace.current_trace_id()
        reply = await bus.command("observed", "echo", ACTOR, MembersQuery(group_id="t"))
    finally:
        trace.end(token)
    assert reply.result is not None
    seen = msgspec.msgpack.decode(reply.result, type=Seen)
    assert (seen.trace_id, seen.user, seen.in_flight) == (sender_trace, "olga", 1)
    # The reply itself travels with the same trace.
    got: asyncio.Queue[dict[str, str] | None] = asyncio.Queue()
    token = trace.begin()
    try:
        sender_trace = trace.current_trace_id()
        inbox = bus.nc.new_inbox()

        async def on_reply(msg: object) -> None:
            await got.put(getattr(msg, "headers", None))

        await bus.nc.subscribe(inbox, cb=on_reply)
        body = msgspec.msgpack.encode(Command(actor=ACTOR, payload=MembersQuery(group_id="r")))
        await bus.nc.publish(SUBJECT, body, reply=inbox, headers=trace.outgoing())
        headers = await asyncio.wait_for(got.get(), 5)
    finally:
        trace.end(token)
    assert headers is not None
    assert trace.trace_id(headers[trace.HEADER]) == sender_trace


async def test_store_calls_are_timed_by_method() -> None:
    class Store:
        size = 3

        async def load(self, key: str) -> str:
            return key * 2

    store = timed(Store())
    before = REGISTRY.get_sample_value("chat_store_seconds_count", {"operation": "load"}) or 0
    assert await store.load("ab") == "abab"
    assert await store.load("c") == "cc"
    assert store.size == 3
    after = REGISTRY.get_sample_value("chat_store_seconds_count", {"operation": "load"})
    assert after == before + 2
