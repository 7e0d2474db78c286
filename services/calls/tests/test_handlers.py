"""The calls commands and the sweeper in-process, on a real Redis and NATS, with a
manual clock: every refusal, every routing rule, every timeout (4 h included)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest_asyncio
from nats.aio.msg import Msg
from redis.asyncio import Redis

from chat_calls.domain import Timing
from chat_calls.handlers import CallHandlers
from chat_calls.state import CallState
from chat_calls.store.sqlite import SqliteCallStore
from chat_calls.sweeper import Sweeper
from chat_calls.turn import IceConfig, credentials
from chat_contracts import bus as b
from chat_contracts import client as c
from chat_contracts.bus import Actor, Command, Fanout, Reply
from chat_runtime.bus import Bus, encode
from chat_runtime.clock import ManualClock, TimeOrderedIds
from chat_runtime.presence import conns_key
from chat_runtime.worker import Router, Worker
from chat_users.handlers import user_handlers
from chat_users.store.sqlite import SqliteUserStore

OFFER_SDP = (
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\n"
)
SENTINEL = "rt.test.sentinel"
_fanout = msgspec.msgpack.Decoder(Fanout)
_push = msgspec.msgpack.Decoder(b.CallPush)
TIMING = Timing(ring_ms=60_000, disconnect_ms=15_000, max_ms=4 * 3600 * 1000)
ICE = IceConfig(
    stun_urls=["stun:stun.test:3478"], turn_urls=["turn:turn.test:3478"], turn_secret="k"
)
OFFER = c.SessionDescription(type="offer", sdp=OFFER_SDP)
ANSWER = c.SessionDescription(type="answer", sdp=OFFER_SDP)
_sids = itertools.count()


class Events:
    """Every fan-out on `rt.>` and every call push, in publish order."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._seen: list[tuple[Any, ...]] = []
        self._sentinel = asyncio.Event()

    async def start(self) -> None:
        await self._bus.subscribe("rt.>", self._on)
        await self._bus.subscribe("evt.calls.>", self._on)
        await self._bus.flush()

    async def _on(self, msg: Msg) -> None:
        if msg.subject == SENTINEL:
            self._sentinel.set()
        elif msg.subject.startswith("evt."):
            self._seen.append((msg.subject, msgspec.to_builtins(_push.decode(msg.data))))
        else:
            f = _fanout.decode(msg.data)
            self._seen.append(
                (msg.subject, f.event, msgspec.json.decode(f.data), f.to_sid, f.skip_sid)
            )

    async def take(self) -> list[tuple[Any, ...]]:
        self._sentinel.clear()
        await self._bus.publish(SENTINEL, b"")
        await asyncio.wait_for(self._sentinel.wait(), timeout=5)
        seen, self._seen = self._seen, []
        return seen


class Harness:
    def __init__(
        self, handlers: CallHandlers, events: Events, clock: ManualClock, redis: Redis
    ) -> None:
        self.handlers = handlers
        self.router: Router = handlers.router()
        self.events = events
        self.clock = clock
        self.redis = redis
        self.sweeper = Sweeper(handlers, handlers._state, 500)

    async def call(self, action: str, user: str, payload: msgspec.Struct, sid: str = "") -> Reply:
        actor = Actor(user_id=user, name=user.title())
        body = encode(Command(actor=actor, payload=payload, origin_sid=sid or f"s{user}"))
        reply = await self.router.dispatch(action, body)
        await self.handlers.idle()
        return reply

    async def ok(self, action: str, user: str, payload: msgspec.Struct, sid: str = "") -> Any:
        reply = await self.call(action, user, payload, sid)
        assert reply.status == "ok", reply
        return msgspec.msgpack.decode(reply.result or b"\x80")

    async def refused(self, action: str, user: str, payload: msgspec.Struct) -> str:
        reply = await self.call(action, user, payload)
        assert reply.status == "error", reply
        assert reply.code is not None
        return reply.code

    async def online(self, *users: str) -> None:
        """A live gateway lease, as the gateway writes it (see chat_runtime.presence)."""
        for user in users:
            await self.redis.zadd(conns_key(user), {"gw-test": time.time() * 1000 + 60_000})

    async def offline(self, *users: str) -> None:
        for user in users:
            await self.redis.delete(conns_key(user))

    async def offer(self, caller: str = "alice", callee: str = "bob") -> str:
        result = await self.ok(
            "offer", caller, c.CallOffer(target_user_id=callee, offer=OFFER, call_type="video")
        )
        call_id: str = result["callId"]
        return call_id

    async def active(self) -> str:
        """alice calls bob (both online), bob answers; the events are consumed."""
        await self.online("alice", "bob")
        call_id = await self.offer()
        await self.ok("answer", "bob", c.CallAnswer(call_id=call_id, answer=ANSWER))
        await self.events.take()
        return call_id

    async def sweep(self, **advance: float) -> int:
        self.clock.advance(**advance)
        return await self.sweeper.sweep()


@pytest_asyncio.fixture
async def h(nats_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Harness]:
    bus = await Bus.connect(nats_url, name="calls-test")
    redis = Redis.from_url(redis_url)
    await redis.flushdb()
    # The real users worker answers the block/devices queries (as deployed).
    users_store = SqliteUserStore(tmp_path / "users.sqlite3")
    await users_store.open()
    users = Worker(bus, user_handlers(users_store, bus).router())
    await users.start()
    store = SqliteCallStore(tmp_path / "calls.sqlite3")
    await store.open()
    clock = ManualClock()
    events = Events(bus)
    await events.start()
    handlers = CallHandlers(
        state=CallState(redis, TIMING),
        store=store,
        bus=bus,
        ice=ICE,
        clock=clock,
        ids=TimeOrderedIds(clock),
    )
    try:
        yield Harness(handlers, events, clock, redis)
    finally:
        await users.stop()
        await store.close()
        await users_store.close()
        await redis.aclose()
        await bus.close()


def ice_servers(user: str, now_s: int) -> list[dict[str, Any]]:
    username, password = credentials("k", user, now_s, 3_600)
    return [
        {"urls": ["stun:stun.test:3478"]},
        {"urls": ["turn:turn.test:3478"], "username": username, "credential": password},
    ]


NOW_S = 1_767_225_600  # ManualClock's start, 2026-01-01T00:00:00Z


async def test_offer_rings_the_callee_with_its_own_credentials(h: Harness) -> None:
    await h.online("alice", "bob")
    result = await h.ok(
        "offer", "alice", c.CallOffer(target_user_id="bob", offer=OFFER, call_type="video")
    )
    call_id = result["callId"]
    assert result == {"callId": call_id, "iceServers": ice_servers("alice", NOW_S)}
    incoming = {
        "callId": call_id,
        "callerId": "alice",
        "callerName": "Alice",
        "callType": "video",
        "offer": {"type": "offer", "sdp": OFFER_SDP},
        "iceServers": ice_servers("bob", NOW_S),
    }
    assert await h.events.take() == [("rt.user.bob", "call:incoming", incoming, None, None)]


async def test_refusals_at_offer(h: Harness) -> None:
    await h.online("alice", "bob", "carol")
    offer = c.CallOffer(target_user_id="alice", offer=OFFER, call_type="audio")
    assert await h.refused("offer", "alice", offer) == "VALIDATION_ERROR"
    bad = c.CallOffer(
        target_user_id="bob", offer=c.SessionDescription(type="offer", sdp="hi"), call_type="audio"
    )
    reply = await h.call("offer", "alice", bad)
    assert (reply.code, reply.field) == ("VALIDATION_ERROR", "offer.sdp")
    wrong_type = c.CallOffer(target_user_id="bob", offer=ANSWER, call_type="audio")
    reply = await h.call("offer", "alice", wrong_type)
    assert (reply.code, reply.field) == ("VALIDATION_ERROR", "offer.type")
    assert await h.events.take() == []
    # offline: no socket, no push device
    lost = await h.offer("alice", "nobody")
    rejected = {"callId": lost, "reason": "offline"}
    assert await h.events.take() == [("rt.user.alice", "call:rejected", rejected, None, None)]
    # busy: bob rings for alice; carol's call to bob is refused, alice cannot call twice
    first = await h.offer("alice", "bob")
    await h.events.take()
    busy = await h.offer("carol", "bob")
    assert await h.events.take() == [
        ("rt.user.carol", "call:rejected", {"callId": busy, "reason": "busy"}, None, None)
    ]
    again = c.CallOffer(target_user_id="carol", offer=OFFER, call_type="audio")
    assert await h.refused("offer", "alice", again) == "CONFLICT"
    history = await h.ok("history", "carol", c.CallsHistory())
    assert [(r["callId"], r["reason"]) for r in history["calls"]] == [(busy, "busy")]
    assert first != busy


async def test_only_parties_signal(h: Harness) -> None:
    await h.online("alice", "bob")
    call_id = await h.offer()
    await h.events.take()
    ref = c.CallRef(call_id=call_id)
    assert await h.refused("end", "mallory", ref) == "FORBIDDEN"
    assert await h.refused("reject", "mallory", ref) == "FORBIDDEN"
    assert await h.refused("answer", "mallory", c.CallAnswer(call_id=call_id, answer=ANSWER)) == (
        "FORBIDDEN"
    )
    assert await h.refused("answer", "alice", c.CallAnswer(call_id=call_id, answer=ANSWER)) == (
        "FORBIDDEN"
    )
    ice = c.CallIce(call_id=call_id, candidate=c.IceCandidate(candidate=""))
    assert await h.refused("ice", "mallory", ice) == "FORBIDDEN"
    assert await h.refused("end", "alice", c.CallRef(call_id="call_none")) == "NOT_FOUND"
    assert await h.events.take() == []


async def test_first_answer_wins_and_candidates_follow_the_answering_socket(h: Harness) -> None:
    await h.online("alice", "bob")
    call_id = await h.offer()
    await h.events.take()
    cand = c.IceCandidate(
        candidate="candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host", sdp_mid="0"
    )
    await h.call("ice", "alice", c.CallIce(call_id=call_id, candidate=cand), sid="salice")
    relayed = {
        "callId": call_id,
        "candidate": {"candidate": cand.candidate, "sdpMid": "0"},
        "fromUserId": "alice",
    }
    assert await h.events.take() == [("rt.user.bob", "call:ice-candidate", relayed, None, None)]
    answer = c.CallAnswer(call_id=call_id, answer=ANSWER)
    assert await h.ok("answer", "bob", answer, sid="bob-phone") == {}
    assert await h.events.take() == [
        (
            "rt.user.alice",
            "call:accepted",
            {"callId": call_id, "answer": {"type": "answer", "sdp": OFFER_SDP}},
            "salice",
            None,
        ),
        (
            "rt.user.bob",
            "call:ended",
            {"callId": call_id, "reason": "answered_elsewhere"},
            None,
            "bob-phone",
        ),
    ]
    reply = await h.call("answer", "bob", answer, sid="bob-laptop")
    assert reply.code == "CONFLICT"
    await h.call("ice", "alice", c.CallIce(call_id=call_id, candidate=cand), sid="salice")
    await h.call("ice", "bob", c.CallIce(call_id=call_id, candidate=cand), sid="bob-laptop")
    await h.call("ice", "bob", c.CallIce(call_id=call_id, candidate=cand), sid="bob-phone")
    from_bob = {**relayed, "fromUserId": "bob"}
    assert await h.events.take() == [
        ("rt.user.bob", "call:ice-candidate", relayed, "bob-phone", None),
        ("rt.user.alice", "call:ice-candidate", from_bob, "salice", None),
    ]
    bad = c.CallIce(call_id=call_id, candidate=c.IceCandidate(candidate="nonsense"))
    reply = await h.call("ice", "alice", bad)
    assert (reply.code, reply.field) == ("VALIDATION_ERROR", "candidate.candidate")


async def test_reject_tells_the_caller_and_the_other_ringing_sockets(h: Harness) -> None:
    await h.online("alice", "bob")
    call_id = await h.offer()
    await h.events.take()
    assert await h.ok("reject", "bob", c.CallRef(call_id=call_id), sid="bob-phone") == {}
    rejected = {"callId": call_id, "reason": "declined"}
    assert await h.events.take() == [
        ("rt.user.alice", "call:rejected", rejected, None, None),
        ("rt.user.bob", "call:rejected", rejected, None, "bob-phone"),
    ]
    assert await h.refused("reject", "bob", c.CallRef(call_id=call_id)) == "CONFLICT"
    # Both are free again.
    await h.offer("bob", "alice")


async def test_hangup_ends_for_both_with_duration_and_is_recorded(h: Harness) -> None:
    await h.online("alice", "bob")
    call_id = await h.offer()
    h.clock.advance(seconds=2)
    await h.ok("answer", "bob", c.CallAnswer(call_id=call_id, answer=ANSWER))
    await h.events.take()
    h.clock.advance(seconds=42.7)
    assert await h.ok("end", "bob", c.CallRef(call_id=call_id)) == {}
    ended = {"callId": call_id, "endedBy": "bob", "reason": "hangup", "duration": 42}
    assert await h.events.take() == [
        ("rt.user.alice", "call:ended", ended, None, None),
        ("rt.user.bob", "call:ended", ended, None, None),
    ]
    assert await h.ok("end", "alice", c.CallRef(call_id=call_id)) == {}
    assert await h.events.take() == []
    history = await h.ok("history", "alice", c.CallsHistory())
    assert history == {
        "calls": [
            {
                "callId": call_id,
                "callerId": "alice",
                "calleeId": "bob",
                "callType": "video",
                "startedAt": "2026-01-01T00:00:00.000Z",
                "answeredAt": "2026-01-01T00:00:02.000Z",
                "endedAt": "2026-01-01T00:00:44.700Z",
                "reason": "hangup",
                "duration": 42,
            }
        ],
        "hasMore": False,
    }


async def test_history_cursor_paging(h: Harness) -> None:
    await h.online("alice", "bob")
    ids = []
    for _ in range(3):
        ids.append(await h.offer())
        await h.ok("end", "alice", c.CallRef(call_id=ids[-1]))
        h.clock.advance(seconds=1)
    page = await h.ok("history", "bob", c.CallsHistory(limit=2))
    assert [r["callId"] for r in page["calls"]] == ids[:0:-1]
    assert page["hasMore"]
    assert page["cursor"] == ids[1]
    rest = await h.ok("history", "bob", c.CallsHistory(limit=2, cursor=page["cursor"]))
    assert [r["callId"] for r in rest["calls"]] == ids[:1]
    assert not rest["hasMore"]
    assert "cursor" not in rest


async def test_unanswered_call_times_out_after_60_s(h: Harness) -> None:
    await h.online("alice", "bob")
    call_id = await h.offer()
    await h.events.take()
    assert await h.sweep(seconds=59.9) == 0
    assert await h.events.take() == []
    assert await h.sweep(seconds=0.1) == 1
    ended = {"callId": call_id, "reason": "timeout"}
    assert await h.events.take() == [
        ("rt.user.alice", "call:ended", ended, None, None),
        ("rt.user.bob", "call:ended", ended, None, None),
    ]
    assert await h.sweep(seconds=60) == 0
    assert await h.refused("answer", "bob", c.CallAnswer(call_id=call_id, answer=ANSWER)) == (
        "CONFLICT"
    )


async def test_an_active_call_ends_after_4_hours(h: Harness) -> None:
    call_id = await h.active()
    assert await h.sweep(hours=3, minutes=59, seconds=59) == 0
    assert await h.sweep(seconds=1) == 1
    ended = {"callId": call_id, "reason": "timeout", "duration": 4 * 3600}
    assert [e[1:3] for e in await h.events.take()] == [("call:ended", ended)] * 2


async def test_a_party_gone_for_15_s_ends_the_call(h: Harness) -> None:
    call_id = await h.active()
    await h.offline("bob")
    assert await h.sweep(seconds=1) == 1  # bob's absence noted
    assert await h.sweep(seconds=14.9) == 0
    assert await h.events.take() == []
    assert await h.sweep(seconds=0.1) == 1
    ended = {"callId": call_id, "endedBy": "bob", "reason": "disconnect", "duration": 16}
    assert [e[1:3] for e in await h.events.take()] == [("call:ended", ended)] * 2


async def test_a_reconnect_within_15_s_keeps_the_call(h: Harness) -> None:
    call_id = await h.active()
    await h.offline("alice")
    await h.sweep(seconds=1)
    await h.online("alice")
    await h.sweep(seconds=10)
    await h.sweep(seconds=10)
    assert await h.events.take() == []
    assert await h.ok("end", "alice", c.CallRef(call_id=call_id)) == {}


async def test_sweeps_of_two_replicas_fire_a_deadline_once(h: Harness) -> None:
    await h.online("alice", "bob")
    await h.offer()
    await h.events.take()
    other = Sweeper(h.handlers, h.handlers._state, 500)
    h.clock.advance(seconds=61)
    counts = await asyncio.gather(h.sweeper.sweep(), other.sweep())
    assert sorted(counts) == [0, 1]
    assert [e[1] for e in await h.events.take()] == ["call:ended", "call:ended"]
