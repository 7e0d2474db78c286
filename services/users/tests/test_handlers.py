"""The users commands through the router over a real nats-server: replies and publications.

Commands that need the groups or messages services (contacts, a user's chats) are
exercised by the integration suite; here the presence change names its rooms (DMs), so
the directory is never asked.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest_asyncio
from nats.aio.msg import Msg

from chat_contracts import bus as b
from chat_contracts import client as c
from chat_contracts import limits, subjects
from chat_contracts.bus import Actor, Command, Fanout, Reply
from chat_runtime.bus import Bus, Publisher, encode
from chat_runtime.clock import ManualClock, iso
from chat_runtime.worker import Router
from chat_users.announce import Announcer
from chat_users.directory import ChatDirectory
from chat_users.domain import CustomStatus, Profile, Sighting
from chat_users.handlers import UserHandlers
from chat_users.store.sqlite import SqliteUserStore

_fanout = msgspec.msgpack.Decoder(Fanout)
_block = msgspec.msgpack.Decoder(b.BlockChanged)


class Recorder:
    """Everything published on `rt.>` and `evt.users.>` while a test runs."""

    SENTINELS = ("rt.sentinel", "evt.users.sentinel")

    def __init__(self) -> None:
        self.messages: list[Msg] = []
        self.sentinels: set[str] = set()
        self.changed = asyncio.Condition()

    async def on_msg(self, msg: Msg) -> None:
        async with self.changed:
            if msg.subject in self.SENTINELS:
                self.sentinels.add(msg.subject)
            else:
                self.messages.append(msg)
            self.changed.notify_all()

    async def settle(self, bus: Bus) -> list[Msg]:
        """What was published so far: a sentinel published after it on each subscription
        arrives after it (NATS keeps one publisher's order per subscription)."""
        self.sentinels.clear()
        for subject in self.SENTINELS:
            await bus.publish(subject, b"")
        async with self.changed:
            await asyncio.wait_for(
                self.changed.wait_for(lambda: len(self.sentinels) == len(self.SENTINELS)), 5
            )
            got, self.messages = self.messages, []
        return got


@pytest_asyncio.fixture
async def env(tmp_path: Path, nats_url: str) -> AsyncIterator[dict[str, Any]]:
    store = SqliteUserStore(tmp_path / "users.sqlite3")
    await store.open()
    bus = await Bus.connect(nats_url, name="users-test")
    recorder = Recorder()
    await bus.subscribe("rt.>", recorder.on_msg)
    await bus.subscribe("evt.users.>", recorder.on_msg)
    await bus.flush()
    clock = ManualClock()
    directory = ChatDirectory(bus)
    handlers = UserHandlers(
        store,
        publisher=Publisher(bus),
        announcer=Announcer(bus, directory, limits.PRESENCE_FANOUT_MAX_GROUP),
        directory=directory,
        clock=clock,
    )
    for user in ("ann", "bob", "cat"):
        await store.record(Sighting(user_id=user, name=user.title()))
    try:
        yield {
            "store": store,
            "bus": bus,
            "rec": recorder,
            "clock": clock,
            "router": handlers.router(),
            "handlers": handlers,
        }
    finally:
        await bus.close()
        await store.close()


async def call(router: Router, action: str, user: str, payload: msgspec.Struct) -> Reply:
    body = encode(Command(actor=Actor(user_id=user, name=user), payload=payload, origin_sid="s1"))
    return await router.dispatch(action, body)


def result(reply: Reply) -> dict[str, Any]:
    assert reply.status == "ok", reply
    assert reply.result is not None
    decoded: dict[str, Any] = msgspec.msgpack.decode(reply.result)
    return decoded


def json(data: bytes) -> Any:
    return msgspec.json.decode(data)


async def test_block_refusals(env: dict[str, Any]) -> None:
    router = env["router"]
    own = await call(router, "block", "ann", c.UserRef(user_id="ann"))
    assert (own.status, own.code, own.field) == ("error", "VALIDATION_ERROR", "userId")
    ghost = await call(router, "block", "ann", c.UserRef(user_id="ghost"))
    assert (ghost.status, ghost.code) == ("error", "NOT_FOUND")
    assert await env["store"].hidden("ann") == []
    assert await env["rec"].settle(env["bus"]) == []


async def test_block_publishes_the_change_and_tells_the_blocked(env: dict[str, Any]) -> None:
    router, rec, bus = env["router"], env["rec"], env["bus"]
    assert result(await call(router, "block", "ann", c.UserRef(user_id="bob"))) == {}
    got = await rec.settle(bus)
    assert [m.subject for m in got] == [subjects.USER_BLOCK_CHANGED, subjects.user("bob")]
    assert _block.decode(got[0].data) == b.BlockChanged(
        blocker_id="ann", blocked_id="bob", blocked=True
    )
    notice = _fanout.decode(got[1].data)
    assert (notice.event, json(notice.data)) == ("user:blocked", {"blockedBy": "ann"})
    # Blocking again changes nothing and says nothing.
    assert result(await call(router, "block", "ann", c.UserRef(user_id="bob"))) == {}
    assert await rec.settle(bus) == []

    for asker, other in (("ann", "bob"), ("bob", "ann")):
        state = await call(
            router, "block_state", "svc", b.BlockQuery(user_id=asker, other_user_id=other)
        )
        assert result(state) == {"blocked": True, "blockedBy": "ann"}
    free = await call(
        router, "block_state", "svc", b.BlockQuery(user_id="ann", other_user_id="cat")
    )
    assert result(free) == {"blocked": False}
    hidden = await call(router, "hidden", "svc", b.HiddenQuery(user_id="bob"))
    assert result(hidden) == {"userIds": ["ann"]}

    assert result(await call(router, "unblock", "ann", c.UserRef(user_id="bob"))) == {}
    got = await rec.settle(bus)
    assert _block.decode(got[0].data).blocked is False
    unblocked = _fanout.decode(got[1].data)
    assert (unblocked.event, json(unblocked.data)) == ("user:unblocked", {"unblockedBy": "ann"})
    assert result(await call(router, "hidden", "svc", b.HiddenQuery(user_id="bob"))) == {
        "userIds": []
    }


async def test_block_notice_can_be_turned_off(env: dict[str, Any]) -> None:
    handlers = UserHandlers(
        env["store"],
        publisher=Publisher(env["bus"]),
        announcer=Announcer(env["bus"], ChatDirectory(env["bus"]), 100),
        directory=ChatDirectory(env["bus"]),
        clock=env["clock"],
        notify_blocked=False,
    )
    reply = await call(handlers.router(), "block", "ann", c.UserRef(user_id="bob"))
    assert result(reply) == {}
    got = await env["rec"].settle(env["bus"])
    assert [m.subject for m in got] == [subjects.USER_BLOCK_CHANGED]


async def test_presence_goes_once_per_room_with_blocks_and_status(env: dict[str, Any]) -> None:
    router, rec, bus, store = env["router"], env["rec"], env["bus"], env["store"]
    await store.block("cat", "ann", env["clock"].now())
    clock = env["clock"]
    expires = clock.now() + timedelta(hours=1)
    await store.set_status(
        "ann", CustomStatus(user_id="ann", text="lunch", emoji="🍕", expires_at=expires)
    )

    at = iso(clock.now())
    change = b.PresenceChanged(user_id="ann", status="offline", at=at, rooms=["c_1", "c_2"])
    assert result(await call(router, "presence", "gateway", change)) == {}
    got = await rec.settle(bus)
    assert sorted(m.subject for m in got) == [subjects.room("c_1"), subjects.room("c_2")]
    assert got[0].data == got[1].data  # encoded once
    fanout = _fanout.decode(got[0].data)
    assert fanout.dedupe_id
    assert fanout.rooms == []
    assert (fanout.skip_user, fanout.skip_users) == ("ann", ["cat"])
    assert json(fanout.data) == {
        "userId": "ann",
        "status": "offline",
        "lastSeenAt": at,
        "customStatus": "🍕 lunch",
    }
    assert [(f.event, json(f.data)) for f in fanout.more] == [
        ("presence:last_seen", {"userId": "ann", "lastSeenAt": at})
    ]
    profile = await store.profile("ann")
    assert isinstance(profile, Profile)
    assert profile.last_seen_at == clock.now()


async def test_bad_status_is_refused_and_stores_nothing(env: dict[str, Any]) -> None:
    router, clock = env["router"], env["clock"]
    past = c.StatusSet(status="x", expires_at=clock.now())
    reply = await call(router, "status_set", "ann", past)
    assert (reply.status, reply.code, reply.field) == ("error", "VALIDATION_ERROR", "expiresAt")
    two = await call(router, "status_set", "ann", c.StatusSet(status="x", emoji="🍕🍕"))
    assert (two.code, two.field) == ("VALIDATION_ERROR", "emoji")
    assert await env["store"].statuses(["ann"]) == {}


async def test_devices_are_capped_at_25(env: dict[str, Any]) -> None:
    router, clock = env["router"], env["clock"]
    for n in range(limits.MAX_PUSH_DEVICES + 1):
        clock.advance(seconds=1)
        device = c.NotificationRegister(device_id=f"d{n}", platform="android", token=f"t{n}")
        assert result(await call(router, "device_register", "ann", device)) == {}
    count = await call(router, "devices", "svc", b.DevicesQuery(user_id="ann"))
    assert result(count) == {"count": limits.MAX_PUSH_DEVICES}
    kept = [d.device_id for d in await env["store"].devices("ann")]
    assert "d0" not in kept
    assert "d25" in kept
    gone = c.NotificationUnregister(device_id="d25")
    assert result(await call(router, "device_unregister", "ann", gone)) == {}
    assert result(await call(router, "devices", "svc", b.DevicesQuery(user_id="ann"))) == {
        "count": limits.MAX_PUSH_DEVICES - 1
    }


async def test_bad_presence_time_is_refused(env: dict[str, Any]) -> None:
    event = b.PresenceChanged(user_id="ann", status="offline", at="soon")
    reply = await call(env["router"], "presence", "gateway", event)
    assert (reply.status, reply.code, reply.field) == ("error", "VALIDATION_ERROR", "at")


async def test_last_seen_needs_ids(env: dict[str, Any]) -> None:
    body = encode({"actor": ["ann", "Ann"], "payload": {"userIds": []}})
    reply = await env["router"].dispatch("last_seen", body)
    assert (reply.status, reply.code) == ("error", "VALIDATION_ERROR")
