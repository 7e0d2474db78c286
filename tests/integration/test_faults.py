"""Faults on a stream of traffic: real processes killed and restarted mid-stream.

Twelve users on two gateways (two groups of six and six DMs, every chat spanning both
gateways) send steadily through two messages workers. Then one fault: a messages
worker SIGKILLed (the other replica takes over), a gateway SIGKILLed (its clients
reconnect to the other), nats-server SIGKILLed and restarted on its port, redis-server
restarted empty, or the messages store's SQLite file held under an exclusive lock for
4 s. Traffic goes on through the fault; then every unacknowledged message is retried
with its own clientMessageId, every member syncs, and `chat_testkit.traffic.audit`
checks that every message is stored exactly once, with the seq its ack gave, without
gaps, delivered to every member exactly once. No ack may be INTERNAL or late.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from chat_testkit import faults
from chat_testkit.probes import LogMark
from chat_testkit.stack import Stack
from chat_testkit.traffic import Audit, Member, Sent, Traffic, audit
from tests.integration.conftest import serve

USERS = 12
#: Traffic before and after the fault (s); every member sends ~4 messages a second.
BEFORE_S = 1.5
AFTER_S = 2.5
LOCK_S = 4.0


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Two gateways, two messages workers, groups and users; acks time out after 2 s."""
    running = Stack(
        workdir=tmp_path_factory.mktemp("faults"),
        workers=("messages", "groups", "users"),
        overrides={
            "CHAT_ACK_TIMEOUT_MS": "2000",
            "CHAT_PRESENCE_GRACE_MS": "500",
            # Hundreds of clients from one address (see test_soak.py).
            "CHAT_HANDSHAKES_PER_ADDRESS_PER_S": "0",
            "CHAT_MAX_PENDING_PER_ADDRESS": "4096",
            "CHAT_RATE_SEND_PER_S": "1000",
            "CHAT_RATE_SEND_BURST": "1000",
            "CHAT_RATE_OTHER_PER_MIN": "60000",
            "CHAT_RATE_SYNC_PER_MIN": "60000",
            "CHAT_RATE_GROUP_CREATE_PER_MIN": "60000",
        },
    )
    yield from serve(_with_second_messages_worker(running))


def _with_second_messages_worker(stack: Stack) -> Stack:
    original = stack.start

    def start() -> Stack:
        original()
        stack.add("messages", "messages-2").wait_ready()
        return stack

    stack.start = start  # type: ignore[method-assign]
    return stack


def live_gateways(stack: Stack) -> list[str]:
    """URLs of the gateways running now (a restarted one is on a new port)."""
    return [
        p.url
        for name, p in sorted(stack.processes.items())
        if name.startswith("gateway") and p.proc.poll() is None and p.port is not None
    ]


async def world(stack: Stack, tag: str) -> Traffic:
    """Twelve members on both gateways: two groups of six, six DMs; all chats known."""
    members = [Member(f"{tag}-u{i}", "") for i in range(USERS)]
    for member in members:
        member.token = stack.token(member.user_id)
    traffic = Traffic(lambda: live_gateways(stack), members)
    for i, member in enumerate(members):
        await traffic.connect(member, prefer=i % 2)
    for first in (0, 6):
        owner, rest = members[first], members[first + 1 : first + 6]
        assert owner.sio is not None
        ack = await owner.sio.call(
            "group:create", {"name": tag, "memberIds": [m.user_id for m in rest]}
        )
        assert ack["status"] == "ok", ack
        for member in (owner, *rest):
            member.chats[ack["group"]["id"]] = {"groupId": ack["group"]["id"]}
    for i in range(6):
        a, b = members[i], members[i + 6]
        first = Sent(f"{tag}-dm-{i}", "", {"targetUserId": b.user_id}, "hi")
        assert await traffic.send(a, first)
        conversation = {"conversationId": first.chat}
        a.chats[first.chat] = conversation
        b.chats[first.chat] = conversation
    # Every member's sockets are in their groups' rooms before the traffic starts.
    for _ in range(100):
        if all(m.others["group:member:added"] >= 6 for m in members):
            break
        await asyncio.sleep(0.05)
    return traffic


Fault = Callable[[Stack], Awaitable[None]]


def _db(stack: Stack) -> Path:
    return stack.workdir / "data" / "messages.sqlite3"


async def run_with_fault(stack: Stack, tag: str, fault: Fault, live_in_order: bool = True) -> Audit:
    """Traffic, the fault, traffic, retries and sync, then the audit. `live_in_order`:
    every member's live `message:new` of a chat came in seq order (the gateways hold an
    early one for the one before it, chat_gateway.ordering)."""
    traffic = await world(stack, tag)
    marks = [LogMark.now(p) for p in stack.processes.values()]
    try:
        traffic.start()
        await asyncio.sleep(BEFORE_S)
        await fault(stack)
        await asyncio.sleep(AFTER_S)
        await traffic.stop()
        await traffic.settle()
        await traffic.sync_all()
        result = audit(traffic, _db(stack))
    finally:
        await traffic.close()
    print(f"{tag}: {result.summary()}")
    for mark in marks:  # nothing crashed, nothing logged a traceback
        if mark.proc.proc.poll() is None:
            assert mark.tracebacks() == [], f"{mark.proc.name}: {mark.tracebacks()[0]}"
        else:
            assert mark.proc.proc.returncode == -9, f"{mark.proc.name} exited on its own"
    assert not traffic.hangs, traffic.hangs[:5]
    assert not [o for o in result.outcomes if "INTERNAL" in o], result.summary()
    assert not result.problems, "\n".join(result.problems[:20])
    if live_in_order:
        assert result.live_out_of_order == 0, result.summary()
    assert result.sent > USERS * (BEFORE_S + AFTER_S), result.summary()
    return result


async def test_a_killed_messages_worker_is_taken_over_by_its_replica(fault_stack: Stack) -> None:
    async def kill_worker(stack: Stack) -> None:
        # Commands pile up in both workers behind a held write lock, so the one killed
        # has some in flight: their clients get `retry` and the replica serves the retry.
        holder = await asyncio.to_thread(faults.hold_lock_for, _db(stack), 1.0)
        await asyncio.sleep(0.5)
        faults.sigkill(stack.processes["messages"])
        await asyncio.to_thread(holder.join)

    result = await run_with_fault(fault_stack, "kill-worker", kill_worker)
    assert result.acked_on_retry > 0, "no command was in flight in the killed worker"
    faults.respawn(fault_stack, "messages", "messages")


async def test_clients_of_a_killed_gateway_reconnect_to_the_other(fault_stack: Stack) -> None:
    async def kill_gateway(stack: Stack) -> None:
        faults.sigkill(stack.processes["gateway-a"])

    await run_with_fault(fault_stack, "kill-gateway", kill_gateway)
    faults.respawn(fault_stack, "gateway-a", "gateway")


async def test_nats_restarted_mid_stream(fault_stack: Stack) -> None:
    marks = [LogMark.now(fault_stack.processes[n]) for n in ("gateway-a", "messages-2")]

    async def restart_nats(stack: Stack) -> None:
        assert stack.nats is not None
        await asyncio.to_thread(faults.restart_nats, stack.nats)

    # Publishes buffered in a worker while NATS is down go out when it reconnects,
    # possibly after the gateway's hold for them ran out: late, so not asserted in order
    # (sync is, and nothing may be lost or doubled).
    await run_with_fault(fault_stack, "restart-nats", restart_nats, live_in_order=False)
    for mark in marks:  # the services did lose NATS, and came back
        assert "nats: disconnected" in mark.since(), mark.proc.name
        assert "nats: reconnected" in mark.since(), mark.proc.name


async def test_redis_restarted_mid_stream(fault_stack: Stack) -> None:
    async def restart_redis(stack: Stack) -> None:
        assert stack.redis is not None
        await asyncio.to_thread(faults.restart_redis, stack.redis)

    await run_with_fault(fault_stack, "restart-redis", restart_redis)


async def test_the_store_locked_for_seconds(fault_stack: Stack) -> None:
    async def lock_store(stack: Stack) -> None:
        holder = await asyncio.to_thread(faults.hold_lock_for, _db(stack), LOCK_S)
        await asyncio.to_thread(holder.join)

    await run_with_fault(fault_stack, "lock-store", lock_store)
