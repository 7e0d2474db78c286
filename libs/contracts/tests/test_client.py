"""Client payload contracts: what decodes, what is refused, and the field it names."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from chat_contracts import client as c
from chat_contracts.routes import BY_EVENT, ROUTES


def test_every_route_is_unique_and_names_a_payload_struct() -> None:
    assert len(BY_EVENT) == len(ROUTES)
    for route in ROUTES:
        assert issubclass(route.payload, c.Payload)


def test_send_accepts_each_chat_target_and_keeps_wire_names() -> None:
    for target in ({"conversationId": "c_1"}, {"targetUserId": "u"}, {"groupId": "g_1"}):
        msg = msgspec.convert({"clientMessageId": "k", "content": "hi", **target}, c.MessageSend)
        assert msg.type == "TEXT"
    media = msgspec.convert(
        {"clientMessageId": "k", "groupId": "g", "type": "IMAGE", "mediaUrl": "https://x"},
        c.MessageSend,
    )
    assert media.content is None


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"clientMessageId": "k", "content": "hi"}, "exactly one of"),
        (
            {"clientMessageId": "k", "groupId": "g", "targetUserId": "u", "content": "x"},
            "exactly one",
        ),
        ({"clientMessageId": "k", "groupId": "g"}, "`content` is required"),
        ({"clientMessageId": "k", "groupId": "g", "content": "   "}, "`content` is required"),
        ({"clientMessageId": "k", "groupId": "g", "type": "FILE"}, "`mediaUrl` is required"),
        ({"clientMessageId": "", "groupId": "g", "content": "x"}, "$.clientMessageId"),
        ({"clientMessageId": "k", "groupId": "g" * 129, "content": "x"}, "$.groupId"),
        (
            {"clientMessageId": "k", "groupId": "g", "content": "x", "retryCount": -1},
            "$.retryCount",
        ),
    ],
)
def test_send_refusals_name_the_problem(payload: dict[str, Any], needle: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=needle.replace("$", r"\$")):
        msgspec.convert(payload, c.MessageSend)


def test_read_single_and_bulk_forms() -> None:
    single = msgspec.convert({"messageId": "m1", "groupId": "g"}, c.MessageRead)
    assert single.ids == ["m1"]
    bulk = msgspec.convert(
        {"messageIds": ["m1", "m2"], "readAt": "2026-01-01T00:00:00Z"}, c.MessageRead
    )
    assert bulk.ids == ["m1", "m2"]
    assert bulk.read_at is not None
    for bad in ({}, {"messageId": "a", "messageIds": ["b"]}, {"messageIds": []}):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(bad, c.MessageRead)


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    ref = msgspec.convert({"groupId": "g", "futureField": 1}, c.GroupRef)
    assert ref.group_id == "g"


def test_group_update_needs_a_change() -> None:
    with pytest.raises(msgspec.ValidationError, match="one of name"):
        msgspec.convert({"groupId": "g"}, c.GroupUpdate)


def test_broadcast_target_limits() -> None:
    with pytest.raises(msgspec.ValidationError, match="at least one"):
        msgspec.convert({"content": "x"}, c.MessageBroadcast)
    # Past 50 targets the payload is well-formed; the worker answers LIMIT_EXCEEDED.
    many = msgspec.convert(
        {"content": "x", "groupIds": [f"g{i}" for i in range(51)]}, c.MessageBroadcast
    )
    assert len(many.group_ids) == 51
    with pytest.raises(msgspec.ValidationError, match="mediaUrl"):
        msgspec.convert({"content": "x", "groupIds": ["g"], "type": "IMAGE"}, c.MessageBroadcast)
