"""The users commands through the router (users publishes nothing, so no NATS here)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest_asyncio

from chat_contracts import bus as b
from chat_contracts import client as c
from chat_contracts.bus import Actor, Command, Reply
from chat_runtime.bus import encode
from chat_runtime.worker import Router
from chat_users.domain import Profile
from chat_users.handlers import UserHandlers
from chat_users.store import SqliteUserStore


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteUserStore]:
    sqlite_store = SqliteUserStore(tmp_path / "users.sqlite3")
    await sqlite_store.open()
    try:
        yield sqlite_store
    finally:
        await sqlite_store.close()


async def call(router: Router, action: str, user: str, payload: msgspec.Struct) -> Reply:
    body = encode(Command(actor=Actor(user_id=user, name=user), payload=payload))
    return await router.dispatch(action, body)


async def presence(router: Router, user: str, status: str, at: str, **kw: str) -> Reply:
    event = b.PresenceChanged(user_id=user, status=status, at=at, **kw)
    return await call(router, "presence", "gateway", event)


def result(reply: Reply) -> dict[str, Any]:
    assert reply.status == "ok", reply
    assert reply.result is not None
    decoded: dict[str, Any] = msgspec.msgpack.decode(reply.result)
    return decoded


async def test_presence_then_last_seen(store: SqliteUserStore) -> None:
    router = UserHandlers(store).router()
    first = await presence(router, "ann", "online", "2026-01-01T10:00:00.000Z", name="Ann")
    assert result(first) == {}
    assert result(await presence(router, "bob", "online", "2026-01-01T10:00:01.000Z")) == {}
    await presence(router, "ann", "offline", "2026-01-01T11:00:00.500Z")
    # A late, older event does not move last seen back.
    await presence(router, "ann", "online", "2026-01-01T10:30:00.000Z")
    profile = await store.profile("ann")
    assert profile is not None
    assert isinstance(profile, Profile)
    assert profile.name == "Ann"

    query = c.LastSeenQuery(user_ids=["zed", "bob", "ann"])
    assert result(await call(router, "last_seen", "carol", query)) == {
        "lastSeen": [
            {"userId": "bob", "lastSeenAt": "2026-01-01T10:00:01.000Z"},
            {"userId": "ann", "lastSeenAt": "2026-01-01T11:00:00.500Z"},
        ]
    }


async def test_bad_presence_time_is_refused(store: SqliteUserStore) -> None:
    router = UserHandlers(store).router()
    reply = await presence(router, "ann", "offline", "soon")
    assert (reply.status, reply.code, reply.field) == ("error", "VALIDATION_ERROR", "at")


async def test_last_seen_needs_ids(store: SqliteUserStore) -> None:
    router = UserHandlers(store).router()
    body = encode({"actor": ["ann", "Ann"], "payload": {"userIds": []}})
    reply = await router.dispatch("last_seen", body)
    assert (reply.status, reply.code) == ("error", "VALIDATION_ERROR")
