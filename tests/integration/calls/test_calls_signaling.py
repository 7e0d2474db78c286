"""Call signaling end to end: real gateways, NATS, Redis and calls workers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from chat_testkit.client import ChatClient
from chat_testkit.stack import Stack
from tests.integration.calls.conftest import (
    ANSWER,
    CANDIDATE,
    DISCONNECT_MS,
    OFFER,
    RING_TIMEOUT_MS,
    SLACK_S,
    Connect,
)


async def offer(caller: ChatClient, callee: str, call_type: str = "video") -> str:
    ack = await caller.call(
        "call:offer", {"targetUserId": callee, "offer": OFFER, "callType": call_type}
    )
    assert ack["status"] == "ok", ack
    call_id: str = ack["callId"]
    return call_id


async def answered(caller: ChatClient, callee_socket: ChatClient, callee: str) -> str:
    """A call from `caller` answered by `callee_socket`; its id once the caller knows."""
    call_id = await offer(caller, callee)
    await callee_socket.wait_for("call:incoming")
    answer = {"callId": call_id, "answer": ANSWER}
    assert await callee_socket.call("call:answer", answer) == {"status": "ok"}
    await caller.wait_for("call:accepted")
    return call_id


def ice_of(ack: dict[str, Any], user: str) -> None:
    """The ICE servers configured for the stack, TURN credentials minted for `user`."""
    stun, turn = ack["iceServers"]
    assert stun == {"urls": ["stun:stun.calls.test:3478"]}
    assert turn["urls"] == ["turn:turn.calls.test:3478?transport=udp"]
    expiry, owner = turn["username"].split(":", 1)
    assert owner == user
    assert 3_500 < int(expiry) - time.time() <= 3_600
    assert turn["credential"]


async def test_every_callee_socket_rings_and_the_first_answer_wins(
    dial: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob = uid("alice"), uid("bob")
    alice_a = await dial(alice, gateway=0, name="Alice")
    alice_b = await dial(alice, gateway=1, name="Alice")
    bob_a = await dial(bob, gateway=0)
    bob_b = await dial(bob, gateway=1)

    ack = await alice_a.call(
        "call:offer", {"targetUserId": bob, "offer": OFFER, "callType": "video"}
    )
    assert ack["status"] == "ok", ack
    ice_of(ack, alice)
    call_id = ack["callId"]
    for socket in (bob_a, bob_b):
        incoming = await socket.wait_for("call:incoming")
        ice_of(incoming, bob)
        assert {k: v for k, v in incoming.items() if k != "iceServers"} == {
            "callId": call_id,
            "callerId": alice,
            "callerName": "Alice",
            "callType": "video",
            "offer": OFFER,
        }
    # Before the answer the caller's candidates reach every ringing socket.
    await alice_a.emit("call:ice-candidate", {"callId": call_id, "candidate": CANDIDATE})
    relayed = {"callId": call_id, "candidate": CANDIDATE, "fromUserId": alice}
    assert await bob_a.wait_for("call:ice-candidate") == relayed
    assert await bob_b.wait_for("call:ice-candidate") == relayed

    assert await bob_b.call("call:answer", {"callId": call_id, "answer": ANSWER}) == {
        "status": "ok"
    }
    assert await alice_a.wait_for("call:accepted") == {"callId": call_id, "answer": ANSWER}
    assert await bob_a.wait_for("call:ended") == {
        "callId": call_id,
        "reason": "answered_elsewhere",
    }
    second = await bob_a.call("call:answer", {"callId": call_id, "answer": ANSWER})
    assert second["status"] == "error"
    assert second["code"] == "CONFLICT"

    # After it, only the answering socket; the callee's go to the offering socket.
    await alice_a.emit("call:ice-candidate", {"callId": call_id, "candidate": CANDIDATE})
    assert await bob_b.wait_for("call:ice-candidate") == relayed
    await bob_b.emit("call:ice-candidate", {"callId": call_id, "candidate": CANDIDATE})
    assert await alice_a.wait_for("call:ice-candidate") == {**relayed, "fromUserId": bob}
    await bob_a.assert_silent("call:ice-candidate", window=0.3)
    await alice_b.assert_silent("call:ice-candidate", window=0.1)
    await alice_b.assert_silent("call:accepted", window=0.1)
    await bob_b.assert_silent("call:ended", window=0.1)

    assert await alice_a.call("call:end", {"callId": call_id}) == {"status": "ok"}
    for socket in (alice_a, alice_b, bob_a, bob_b):
        ended = await socket.wait_for("call:ended")
        assert ended["callId"] == call_id
        assert ended["reason"] == "hangup"
        assert ended["endedBy"] == alice
        assert ended["duration"] >= 0
    history = await bob_a.call("calls:history", {})
    assert history["status"] == "ok"
    assert not history["hasMore"]
    [record] = history["calls"]
    assert record["callId"] == call_id
    assert (record["callerId"], record["calleeId"], record["reason"]) == (alice, bob, "hangup")
    assert record["answeredAt"] <= record["endedAt"]


async def test_refusals(dial: Connect, uid: Callable[[str], str]) -> None:
    alice, bob, carol = uid("alice"), uid("bob"), uid("carol")
    alice_a = await dial(alice)
    bob_b = await dial(bob, gateway=1)
    carol_a = await dial(carol)
    mallory = await dial(uid("mallory"), gateway=1)

    async def refused(socket: ChatClient, event: str, payload: Any) -> tuple[str, str | None]:
        ack = await socket.call(event, payload)
        assert ack["status"] == "error", ack
        return ack["code"], ack.get("field")

    self_call = {"targetUserId": alice, "offer": OFFER, "callType": "audio"}
    assert await refused(alice_a, "call:offer", self_call) == ("VALIDATION_ERROR", "targetUserId")
    not_sdp = {"targetUserId": bob, "offer": {"type": "offer", "sdp": "hi"}, "callType": "audio"}
    assert await refused(alice_a, "call:offer", not_sdp) == ("VALIDATION_ERROR", "offer.sdp")
    huge = {
        "targetUserId": bob,
        "offer": {"type": "offer", "sdp": OFFER["sdp"] + "a=x:" + "y" * 100_000},
        "callType": "audio",
    }
    code, field = await refused(alice_a, "call:offer", huge)
    assert code == "VALIDATION_ERROR"
    assert field is not None
    assert "sdp" in field
    bad_type = {"targetUserId": bob, "offer": OFFER, "callType": "hologram"}
    assert await refused(alice_a, "call:offer", bad_type) == ("VALIDATION_ERROR", "callType")
    await bob_b.assert_silent("call:incoming", window=0.2)

    # Offline: no socket and no push device (the users service knows of none).
    lost = await offer(alice_a, uid("nobody"))
    assert await alice_a.wait_for("call:rejected") == {"callId": lost, "reason": "offline"}

    call_id = await offer(alice_a, bob)
    await bob_b.wait_for("call:incoming")
    busy = await offer(carol_a, bob)
    assert await carol_a.wait_for("call:rejected") == {"callId": busy, "reason": "busy"}
    await bob_b.assert_silent("call:incoming", window=0.3)

    for event, payload in (
        ("call:answer", {"callId": call_id, "answer": ANSWER}),
        ("call:reject", {"callId": call_id}),
        ("call:end", {"callId": call_id}),
    ):
        assert (await refused(mallory, event, payload))[0] == "FORBIDDEN"
    await mallory.emit("call:ice-candidate", {"callId": call_id, "candidate": CANDIDATE})
    await bob_b.assert_silent("call:ice-candidate", window=0.3)
    assert (await refused(mallory, "call:end", {"callId": "call_unknown"}))[0] == "NOT_FOUND"

    assert await bob_b.call("call:reject", {"callId": call_id}) == {"status": "ok"}
    assert await alice_a.wait_for("call:rejected") == {"callId": call_id, "reason": "declined"}


async def test_reject_stops_the_other_ringing_sockets(
    dial: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob = uid("alice"), uid("bob")
    alice_a = await dial(alice)
    bob_a = await dial(bob, gateway=0)
    bob_b = await dial(bob, gateway=1)
    call_id = await offer(alice_a, bob)
    await bob_a.wait_for("call:incoming")
    await bob_b.wait_for("call:incoming")
    assert await bob_a.call("call:reject", {"callId": call_id}) == {"status": "ok"}
    declined = {"callId": call_id, "reason": "declined"}
    assert await alice_a.wait_for("call:rejected") == declined
    assert await bob_b.wait_for("call:rejected") == declined
    await bob_a.assert_silent("call:rejected", window=0.2)


async def test_an_unanswered_call_times_out_on_both_sides(
    dial: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob = uid("alice"), uid("bob")
    alice_a = await dial(alice)
    bob_b = await dial(bob, gateway=1)
    started = time.monotonic()
    call_id = await offer(alice_a, bob)
    await bob_b.wait_for("call:incoming")
    limit = RING_TIMEOUT_MS / 1000 + SLACK_S
    timeout = {"callId": call_id, "reason": "timeout"}
    assert await alice_a.wait_for("call:ended", timeout=limit) == timeout
    assert await bob_b.wait_for("call:ended", timeout=1) == timeout
    assert time.monotonic() - started >= RING_TIMEOUT_MS / 1000 - 0.05


async def test_a_party_gone_for_the_disconnect_time_ends_the_call(
    dial: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob = uid("alice"), uid("bob")
    alice_a = await dial(alice)
    bob_b = await dial(bob, gateway=1)
    call_id = await answered(alice_a, bob_b, bob)
    gone_at = time.monotonic()
    await bob_b.close()
    ended = await alice_a.wait_for("call:ended", timeout=DISCONNECT_MS / 1000 + SLACK_S)
    assert time.monotonic() - gone_at >= DISCONNECT_MS / 1000 - 0.05
    assert ended["callId"] == call_id
    assert ended["reason"] == "disconnect"
    assert ended["endedBy"] == bob
    assert ended["duration"] >= 1


async def test_a_quick_reconnect_keeps_the_call(dial: Connect, uid: Callable[[str], str]) -> None:
    alice, bob = uid("alice"), uid("bob")
    alice_a = await dial(alice)
    bob_b = await dial(bob, gateway=1)
    call_id = await answered(alice_a, bob_b, bob)
    await bob_b.close()
    await asyncio.sleep(DISCONNECT_MS / 3000)
    bob_again = await dial(bob, gateway=0)
    await alice_a.assert_silent("call:ended", window=DISCONNECT_MS / 1000 + 1)
    assert await bob_again.call("call:end", {"callId": call_id}) == {"status": "ok"}
    assert (await alice_a.wait_for("call:ended"))["reason"] == "hangup"


async def test_the_ring_timeout_fires_after_the_worker_that_started_the_call_died(
    calls_stack: Stack, dial: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob = uid("alice"), uid("bob")
    alice_a = await dial(alice)
    bob_b = await dial(bob, gateway=1)
    started = calls_stack.processes["calls"]
    # The only calls worker takes the offer (and stores its deadline in Redis) ...
    call_id = await offer(alice_a, bob)
    await bob_b.wait_for("call:incoming")
    # ... a second replica comes up, and the first one crashes mid-ring.
    replica = calls_stack.add("calls", "calls-b")
    try:
        replica.wait_ready()
        started.kill()
        assert started.proc.returncode == -9
        timeout = {"callId": call_id, "reason": "timeout"}
        limit = RING_TIMEOUT_MS / 1000 + SLACK_S
        assert await alice_a.wait_for("call:ended", timeout=limit) == timeout
        assert await bob_b.wait_for("call:ended", timeout=1) == timeout
        # The survivor serves the next call.
        again = await offer(alice_a, bob)
        assert (await bob_b.wait_for("call:incoming"))["callId"] == again
        assert await alice_a.call("call:end", {"callId": again}) == {"status": "ok"}
    finally:
        # The stack goes on with the replica as its calls worker.
        del calls_stack.processes["calls-b"]
        calls_stack.processes["calls"] = replica
