"""The media repository contract: SQLite and MongoDB pass the same tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chat_contracts import DomainError, ErrorCode
from chat_media.domain import Kind, Limits, Media, Place, State, UploadSession
from chat_media.store import MediaStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = T0.replace(hour=0)
LIMITS = Limits(max_bytes=1_000, max_concurrent=2, daily_quota_bytes=2_500)


def session(upload_id: str, user: str = "amy", size: int = 500, at: datetime = T0) -> UploadSession:
    return UploadSession(
        upload_id=upload_id,
        user_id=user,
        file_name=f"{upload_id}.pdf",
        size=size,
        created_at=at,
        expires_at=at + timedelta(hours=1),
    )


def media(media_id: str, upload_id: str, owner: str = "amy") -> Media:
    return Media(
        media_id=media_id,
        upload_id=upload_id,
        owner_id=owner,
        file_name="a.pdf",
        mime="application/pdf",
        kind=Kind.DOCUMENT,
        size=500,
        key=f"u/{upload_id}",
        created_at=T0,
    )


async def test_sessions_round_trip_and_progress(store: MediaStore) -> None:
    await store.open_session(session("up_1"), LIMITS, DAY)
    later = T0 + timedelta(hours=2)
    await store.progress("up_1", 120, later, "application/pdf")
    got = await store.session("up_1")
    assert got is not None
    assert (got.received, got.expires_at, got.mime, got.state) == (
        120,
        later,
        "application/pdf",
        State.OPEN,
    )
    assert await store.session("up_none") is None


async def test_concurrent_cap_and_daily_quota(store: MediaStore) -> None:
    await store.open_session(session("up_1", size=900), LIMITS, DAY)
    await store.open_session(session("up_2", size=900), LIMITS, DAY)
    with pytest.raises(DomainError) as cap:
        await store.open_session(session("up_3", size=100), LIMITS, DAY)
    assert cap.value.code is ErrorCode.LIMIT_EXCEEDED
    await store.finish("up_1", State.FAILED, "x")  # one slot free again ...
    with pytest.raises(DomainError, match="quota"):  # ... but today's bytes count
        await store.open_session(session("up_4", size=800), LIMITS, DAY)
    await store.open_session(session("up_5", size=700), LIMITS, DAY)
    # Another user, and the next day, start from zero.
    await store.open_session(session("up_6", user="bob", size=900), LIMITS, DAY)
    tomorrow = T0 + timedelta(days=1)
    await store.finish("up_2", State.FAILED, "x")
    await store.finish("up_5", State.FAILED, "x")
    await store.open_session(
        session("up_7", size=1_000, at=tomorrow), LIMITS, DAY + timedelta(days=1)
    )
    assert await store.session("up_4") is None


async def test_an_expired_open_session_does_not_hold_a_slot(store: MediaStore) -> None:
    await store.open_session(session("up_1", size=10), LIMITS, DAY)
    await store.open_session(session("up_2", size=10), LIMITS, DAY)
    late = T0 + timedelta(hours=2)
    await store.open_session(session("up_3", size=10, at=late), LIMITS, DAY)
    expired = await store.expired(late, 10)
    assert [s.upload_id for s in expired] == ["up_1", "up_2"]


async def test_finish_and_complete_happen_once(store: MediaStore) -> None:
    await store.open_session(session("up_1"), LIMITS, DAY)
    ended = await store.finish("up_1", State.EXPIRED, "upload expired")
    assert ended is not None
    assert (ended.state, ended.error) == (State.EXPIRED, "upload expired")
    assert await store.finish("up_1", State.FAILED, "again") is None
    assert not await store.complete("up_1", media("md_1", "up_1"))
    assert await store.media("md_1") is None

    await store.open_session(session("up_2"), LIMITS, DAY)
    assert await store.complete("up_2", media("md_2", "up_2"))
    done = await store.session("up_2")
    assert done is not None
    assert (done.state, done.media_id, done.received) == (State.COMPLETE, "md_2", 500)
    assert await store.media("md_2") == media("md_2", "up_2")
    assert await store.finish("up_2", State.EXPIRED, "late") is None
    assert await store.expired(T0 + timedelta(days=2), 10) == []


async def test_places_are_idempotent_and_the_last_delete_removes_the_media(
    store: MediaStore,
) -> None:
    await store.open_session(session("up_1"), LIMITS, DAY)
    await store.complete("up_1", media("md_1", "up_1"))
    first = Place(
        media_id="md_1", message_id="m_1", sender_id="amy", chat="p:amy:bob", client_message_id="c1"
    )
    await store.add_place(first)
    await store.add_place(first)
    # A retried send (same clientMessageId, a new draft id) adds nothing.
    await store.add_place(
        Place(
            media_id="md_1",
            message_id="m_1b",
            sender_id="amy",
            chat="p:amy:bob",
            client_message_id="c1",
        )
    )
    second = Place(media_id="md_1", message_id="m_2", sender_id="amy", chat="g:g_1")
    await store.add_place(second)
    assert sorted(p.message_id for p in await store.places("md_1")) == ["m_1", "m_2"]

    assert await store.remove_places("m_1", "amy", "c1") == []
    assert [p.message_id for p in await store.places("md_1")] == ["m_2"]
    gone = await store.remove_places("m_2", "amy", None)
    assert [m.media_id for m in gone] == ["md_1"]
    stored = await store.media("md_1")
    assert stored is not None
    assert stored.deleted
    assert await store.remove_places("m_2", "amy", None) == []
