"""Pure push rules, and the library internals the providers rely on."""

from __future__ import annotations

from datetime import UTC, datetime

import aioapns
from aioapns.connection import APNsKeyConnectionPool, APNsTLSClientProtocol

from chat_contracts.bus import CallPush, MessagePush
from chat_users.push.apns import endpoint_protocol
from chat_users.push.payload import backoff, call_note, message_note, preview, retry_after
from chat_users.push.webpush import topic

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def event(content: str = "hello", kind: str = "TEXT") -> MessagePush:
    return MessagePush(
        message_id="m_1",
        chat_id="c_1",
        sender_id="ann",
        sender_name="Ann",
        type=kind,
        content=content,
    )


def test_preview_is_cut_and_media_is_named() -> None:
    assert preview(event("x" * 150), 100) == "x" * 99 + "…"
    assert preview(event("  short  "), 100) == "short"
    assert preview(event("", "IMAGE"), 100) == "Photo"
    assert preview(event("", "TEXT"), 100) == "New message"


def test_previews_off_hide_the_text() -> None:
    on = message_note(event("secret plans"), previews=True, max_length=100)
    off = message_note(event("secret plans"), previews=False, max_length=100)
    assert (on.title, on.body) == ("Ann", "secret plans")
    assert (off.title, off.body) == ("Ann", "New message")
    assert (
        off.data
        == on.data
        == {
            "type": "message",
            "chatId": "c_1",
            "messageId": "m_1",
            "senderId": "ann",
            "senderName": "Ann",
        }
    )
    assert on.collapse_id == "m_1"
    assert not on.high_priority


def test_calls_ring_at_high_priority() -> None:
    note = call_note(
        CallPush(
            call_id="k_1", callee_id="bob", caller_id="ann", caller_name="Ann", call_type="video"
        )
    )
    assert note.high_priority
    assert note.body == "Video call from Ann"
    assert note.data["callId"] == "k_1"


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after("7", NOW) == 7.0
    assert retry_after("Thu, 01 Jan 2026 12:00:30 GMT", NOW) == 30.0
    assert retry_after("Thu, 01 Jan 2026 11:00:00 GMT", NOW) == 0.0
    assert retry_after(None, NOW) is None
    assert retry_after("soon", NOW) is None
    assert retry_after("²", NOW) is None


def test_backoff_honours_the_service_else_doubles() -> None:
    assert backoff(1, 5.0) == 5.0
    assert [backoff(n, None) for n in (1, 2, 3, 8)] == [1.0, 2.0, 4.0, 60.0]


def test_web_push_topic_is_short_and_url_safe() -> None:
    value = topic("m_" + "f" * 60)
    assert len(value) == 32
    assert set(value) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert topic("m_1") == topic("m_1") != topic("m_2")


async def test_aioapns_internals_we_rely_on() -> None:
    """`ApnsProvider` points aioapns at another host by swapping the pool's protocol class
    for a subclass with other `APNS_SERVER`/`APNS_PORT` (aioapns 4.x). Fails loudly if a new
    aioapns version changes that (async: the pool takes the running loop)."""
    assert aioapns.__name__ == "aioapns"
    assert APNsTLSClientProtocol.APNS_PORT == 443
    pool = APNsKeyConnectionPool(key="k", key_id="i", team_id="t", topic="x")
    assert issubclass(pool.protocol_class, APNsTLSClientProtocol)
    custom = endpoint_protocol("127.0.0.1", 8443)
    pool.protocol_class = custom
    assert (pool.protocol_class.APNS_SERVER, pool.protocol_class.APNS_PORT) == ("127.0.0.1", 8443)
    source = APNsKeyConnectionPool._create_connection.__code__.co_names
    assert "protocol_class" in source
    assert "APNS_SERVER" in source
    assert "APNS_PORT" in source
