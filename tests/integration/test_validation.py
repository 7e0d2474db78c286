"""Malformed input gets VALIDATION_ERROR naming the field; rate limits answer retry."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from chat_contracts import limits
from chat_testkit.client import ChatClient
from chat_testkit.stack import Stack
from tests.integration.conftest import Connect, extra_gateway


@pytest.mark.parametrize(
    ("event", "payload", "field"),
    [
        (
            "message:send",
            {"clientMessageId": 5, "targetUserId": "x", "content": "a"},
            "clientMessageId",
        ),
        ("message:send", {"clientMessageId": "a", "content": "no target"}, None),
        (
            "message:send",
            {"clientMessageId": "a", "targetUserId": "x", "groupId": "g", "content": "a"},
            None,
        ),
        (
            "message:send",
            {"clientMessageId": "a", "targetUserId": "x", "content": "x" * 5001},
            "content",
        ),
        (
            "message:send",
            {"clientMessageId": "a", "targetUserId": "x", "type": "GIF", "content": "a"},
            "type",
        ),
        ("message:send", "not an object", None),
        ("messages:history", {"groupId": "g", "limit": 201}, "limit"),
        ("message:read", {"messageIds": ["a"] * 501}, "messageIds"),
        ("group:create", {"name": ""}, "name"),
        ("group:member:role", {"groupId": "g", "userId": "u", "role": "OWNER"}, "role"),
        ("sync", {"since": [{"seq": -1, "groupId": "g"}]}, "since[0].seq"),
        ("presence:set", {"status": "offline"}, "status"),
    ],
)
async def test_malformed_payload_gets_validation_error(
    connect: Connect, uid: Callable[[str], str], event: str, payload: Any, field: str | None
) -> None:
    client = await connect(uid("fuzzer"))
    ack = await client.call(event, payload)
    assert ack["status"] == "error"
    assert ack["code"] == "VALIDATION_ERROR"
    assert ack["error"]
    if field is not None:
        assert ack["field"] == field
    # The socket is still usable afterwards.
    ok = await client.call("groups:list", {})
    assert ok["status"] == "ok"


async def test_unknown_event_gets_validation_error(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    client = await connect(uid("fuzzer"))
    ack = await client.call("message:explode", {"x": 1})
    assert ack["code"] == "VALIDATION_ERROR"
    assert "message:explode" in ack["error"]


async def test_refused_send_writes_nothing(connect: Connect, uid: Callable[[str], str]) -> None:
    alice, bob = uid("alice"), uid("bob")
    client = await connect(alice)
    bad = await client.call(
        "message:send", {"clientMessageId": "k", "targetUserId": bob, "type": "TEXT"}
    )
    assert bad["code"] == "VALIDATION_ERROR"
    history = await client.call("messages:history", {"targetUserId": bob})
    assert history == {"status": "ok", "messages": [], "hasMore": False}


@pytest.fixture(scope="module")
def default_limits_gateway(stack: Stack) -> Iterator[str]:
    """A gateway with the protocol's default rate limits (5 sends/s, burst 10; 10
    `group:create` and 30 `sync` a minute)."""
    with extra_gateway(
        stack,
        "gateway-limits",
        CHAT_RATE_SEND_PER_S="5",
        CHAT_RATE_SEND_BURST="10",
        CHAT_RATE_GROUP_CREATE_PER_MIN=str(limits.RATE_GROUP_CREATE_PER_MIN),
        CHAT_RATE_SYNC_PER_MIN=str(limits.RATE_SYNC_PER_MIN),
    ) as url:
        yield url


async def test_send_rate_limit_answers_retry(
    stack: Stack, default_limits_gateway: str, uid: Callable[[str], str]
) -> None:
    alice = await ChatClient("spammer").connect(default_limits_gateway, stack.token(uid("spammer")))
    target = uid("victim")
    acks = []
    for _ in range(14):  # burst 10 at 5/s: the tail is refused with retry
        acks.append(
            await alice.call(
                "message:send",
                {"clientMessageId": uuid.uuid4().hex, "targetUserId": target, "content": "spam"},
            )
        )
    limited = [a for a in acks if a["status"] == "retry"]
    assert limited, acks
    assert all(a["code"] == "RATE_LIMITED" and a["retryAfter"] > 0 for a in limited)
    assert acks[0]["status"] == "ok"
    await alice.close()


@pytest.mark.parametrize(
    ("event", "payload", "allowed"),
    [
        ("group:create", {"name": "g", "memberIds": []}, int(limits.RATE_GROUP_CREATE_PER_MIN)),
        ("sync", {}, int(limits.RATE_SYNC_PER_MIN)),
    ],
)
async def test_create_and_sync_have_their_own_stricter_buckets(
    stack: Stack,
    default_limits_gateway: str,
    uid: Callable[[str], str],
    event: str,
    payload: dict[str, Any],
    allowed: int,
) -> None:
    client = await ChatClient("busy").connect(default_limits_gateway, stack.token(uid("busy")))
    acks = [await client.call(event, payload) for _ in range(allowed + 1)]
    # The minute's burst passes; the next is told to wait for the next token (60 s /
    # `allowed`, less the time the burst took).
    assert [a["status"] for a in acks[:allowed]] == ["ok"] * allowed, acks
    refused = acks[allowed]
    assert (refused["status"], refused["code"]) == ("retry", "RATE_LIMITED")
    assert 0 < refused["retryAfter"] <= 60_000 // allowed
    # The other commands' bucket is untouched.
    listed = await client.call("groups:list", {})
    assert listed["status"] == "ok", listed
    await client.close()
