"""Calls and people: the `blocked` refusal and ringing an offline callee by push.

These need the users service's blocks and push devices (the people branch:
`user:block`, `notification:register`, `cmd.users.block_state`, `cmd.users.devices`).
Until those routes are served they are skipped, naming what is missing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec
import pytest
from nats.aio.msg import Msg

from chat_contracts import routes, subjects
from chat_contracts.bus import CallPush
from chat_runtime.bus import Bus
from chat_testkit.stack import Stack
from tests.integration.calls.conftest import ANSWER, OFFER, Connect

needs_blocks = pytest.mark.skipif(
    not routes.USER_BLOCK.served,
    reason="needs the people branch: user:block is not served (cmd.users.block_state)",
)
needs_devices = pytest.mark.skipif(
    not routes.NOTIFICATION_REGISTER.served,
    reason="needs the people branch: notification:register is not served (cmd.users.devices)",
)


@needs_blocks
async def test_a_block_either_way_refuses_the_call(
    dial: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob = uid("alice"), uid("bob")
    alice_a = await dial(alice)
    bob_b = await dial(bob, gateway=1)
    # The users service learns of Bob from his gateway's presence announcement, published
    # (not awaited) at his connect: until it lands, Bob is an "unknown user". Seen once
    # in a full run on a loaded machine; asked again until known (5 s at most).
    deadline = asyncio.get_running_loop().time() + 5
    while (ack := await alice_a.call("user:block", {"userId": bob})).get("code") == "NOT_FOUND":
        assert asyncio.get_running_loop().time() < deadline, ack
        await asyncio.sleep(0.05)
    assert ack == {"status": "ok"}

    for caller, callee in ((bob_b, alice), (alice_a, bob)):
        ack = await caller.call(
            "call:offer", {"targetUserId": callee, "offer": OFFER, "callType": "audio"}
        )
        assert ack["status"] == "ok", ack
        rejected = await caller.wait_for("call:rejected")
        assert rejected == {"callId": ack["callId"], "reason": "blocked"}
    await alice_a.assert_silent("call:incoming", window=0.3)
    await bob_b.assert_silent("call:incoming", window=0.1)
    # The blocked caller's attempt is not in the blocker's history.
    history = await alice_a.call("calls:history", {})
    assert [c["callerId"] for c in history["calls"]] == [alice]

    assert await alice_a.call("user:unblock", {"userId": bob}) == {"status": "ok"}
    ack = await bob_b.call(
        "call:offer", {"targetUserId": alice, "offer": OFFER, "callType": "audio"}
    )
    assert (await alice_a.wait_for("call:incoming"))["callId"] == ack["callId"]
    assert await bob_b.call("call:end", {"callId": ack["callId"]}) == {"status": "ok"}


@needs_devices
async def test_an_offline_callee_with_a_device_is_pushed_and_rings_on_connect(
    calls_stack: Stack, dial: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob = uid("alice"), uid("bob")
    bob_phone = await dial(bob, gateway=1)
    register = {"deviceId": "phone-1", "platform": "android", "token": "fcm-token-1"}
    assert await bob_phone.call("notification:register", register) == {"status": "ok"}
    await bob_phone.close()

    assert calls_stack.nats is not None
    bus = await Bus.connect(calls_stack.nats.url, name="calls-push-test")
    pushes: asyncio.Queue[tuple[CallPush, str | None]] = asyncio.Queue()
    decoder = msgspec.msgpack.Decoder(CallPush)

    async def on_push(msg: Msg) -> None:
        msg_id = (msg.headers or {}).get("Nats-Msg-Id")
        pushes.put_nowait((decoder.decode(msg.data), msg_id))

    await bus.subscribe(subjects.CALL_PUSH, on_push)
    await bus.flush()
    try:
        alice_a = await dial(alice, name="Alice")
        ack = await alice_a.call(
            "call:offer", {"targetUserId": bob, "offer": OFFER, "callType": "video"}
        )
        assert ack["status"] == "ok", ack
        call_id = ack["callId"]
        push, msg_id = await asyncio.wait_for(pushes.get(), 5)
        # Written through JetStream (its de-duplication id), not a plain publish that a
        # nats-server restart could lose.
        assert msg_id == f"{call_id}:ring"
        assert push == CallPush(
            call_id=call_id, callee_id=bob, caller_id=alice, caller_name="Alice", call_type="video"
        )
        await alice_a.assert_silent("call:rejected", window=0.5)

        # Bob opens the app from the push: his new socket rings with the offer.
        bob_again = await dial(bob, gateway=0)
        incoming = await bob_again.wait_for("call:incoming")
        assert (incoming["callId"], incoming["offer"]) == (call_id, OFFER)
        answer = {"callId": call_id, "answer": ANSWER}
        assert await bob_again.call("call:answer", answer) == {"status": "ok"}
        assert (await alice_a.wait_for("call:accepted"))["callId"] == call_id
        assert await alice_a.call("call:end", {"callId": call_id}) == {"status": "ok"}
    finally:
        await bus.close()
