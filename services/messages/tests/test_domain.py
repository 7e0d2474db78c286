"""Pure rules of the messages service."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chat_contracts import DomainError, ErrorCode, limits
from chat_contracts.bus import Membership
from chat_contracts.client import SyncCursor
from chat_contracts.server import SocketMessage
from chat_messages import domain
from chat_messages.domain import (
    ChatCounters,
    Conversation,
    ConversationTarget,
    GroupTarget,
    PeerTarget,
    StoredMessage,
)

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def stored(
    seq: int,
    *,
    chat_id: str = "c_1",
    sender_id: str = "alice",
    content: str | None = "hello",
    deleted: bool = False,
    reply_to_id: str | None = None,
) -> StoredMessage:
    return StoredMessage(
        id=f"m_{chat_id}_{seq}",
        chat_id=chat_id,
        seq=seq,
        sender_id=sender_id,
        sender_name=sender_id.title(),
        sender_avatar=None,
        client_message_id=f"cm{seq}",
        type="TEXT",
        content=content,
        media_url=None,
        reply_to_id=reply_to_id,
        created_at=T0,
        deleted_at=T0 + timedelta(minutes=1) if deleted else None,
    )


def socket_messages(count: int, chat_id: str = "g_1") -> list[SocketMessage]:
    return [domain.to_socket_message(stored(s, chat_id=chat_id), None) for s in range(1, count + 1)]


def assert_refused(exc: pytest.ExceptionInfo[DomainError], code: ErrorCode, field: str) -> None:
    assert exc.value.code is code
    assert exc.value.field == field


# --- chat resolution ----------------------------------------------------------------


class TestTargetOf:
    def test_peer_pair_is_sorted_whoever_asks(self) -> None:
        a = domain.target_of("zed", conversation_id=None, target_user_id="amy", group_id=None)
        b = domain.target_of("amy", conversation_id=None, target_user_id="zed", group_id=None)
        assert a == b == PeerTarget(user_a="amy", user_b="zed")

    def test_dm_to_yourself_is_a_validation_error(self) -> None:
        with pytest.raises(DomainError) as exc:
            domain.target_of("amy", conversation_id=None, target_user_id="amy", group_id=None)
        assert_refused(exc, ErrorCode.VALIDATION_ERROR, "targetUserId")

    def test_conversation_and_group(self) -> None:
        conversation = domain.target_of(
            "amy", conversation_id="c_1", target_user_id=None, group_id=None
        )
        group = domain.target_of("amy", conversation_id=None, target_user_id=None, group_id="g_1")
        assert conversation == ConversationTarget(conversation_id="c_1")
        assert group == GroupTarget(group_id="g_1")


class TestParticipant:
    conversation = Conversation(id="c_1", user_a="amy", user_b="bob", created_at=T0)

    def test_missing_conversation_is_not_found(self) -> None:
        with pytest.raises(DomainError) as exc:
            domain.require_participant(None, "amy")
        assert_refused(exc, ErrorCode.NOT_FOUND, "conversationId")

    def test_outsider_is_forbidden(self) -> None:
        with pytest.raises(DomainError) as exc:
            domain.require_participant(self.conversation, "eve", field="messageIds")
        assert_refused(exc, ErrorCode.FORBIDDEN, "messageIds")

    @pytest.mark.parametrize("user", ["amy", "bob"])
    def test_both_participants_pass(self, user: str) -> None:
        assert domain.require_participant(self.conversation, user) is self.conversation


class TestGroupMember:
    def test_missing_group_is_not_found(self) -> None:
        with pytest.raises(DomainError) as exc:
            domain.require_member(Membership(exists=False))
        assert_refused(exc, ErrorCode.NOT_FOUND, "groupId")

    def test_non_member_is_forbidden(self) -> None:
        with pytest.raises(DomainError) as exc:
            domain.require_member(Membership(exists=True, member_count=3))
        assert_refused(exc, ErrorCode.FORBIDDEN, "groupId")

    @pytest.mark.parametrize("role", ["ADMIN", "MEMBER"])
    def test_members_pass(self, role: str) -> None:
        domain.require_member(Membership(exists=True, member_count=3, role=role))  # type: ignore[arg-type]


class TestReplyTarget:
    def test_same_chat_passes(self) -> None:
        original = stored(1, chat_id="c_1")
        assert domain.require_reply_target(original, "c_1") is original

    @pytest.mark.parametrize("original", [None, stored(1, chat_id="c_other")])
    def test_missing_or_other_chat_is_not_found(self, original: StoredMessage | None) -> None:
        with pytest.raises(DomainError) as exc:
            domain.require_reply_target(original, "c_1")
        assert_refused(exc, ErrorCode.NOT_FOUND, "replyToId")


def test_chat_fields_by_prefix() -> None:
    assert domain.chat_fields("c_1") == ("c_1", None)
    assert domain.chat_fields("g_1") == (None, "g_1")


# --- views --------------------------------------------------------------------------


class TestReplyContext:
    def test_preview_is_truncated(self) -> None:
        original = stored(1, content="x" * (limits.REPLY_PREVIEW_LENGTH + 50))
        context = domain.reply_context(original)
        assert context.content == "x" * limits.REPLY_PREVIEW_LENGTH
        assert context.is_deleted is False
        assert (context.message_id, context.sender_id, context.sender_name) == (
            original.id,
            "alice",
            "Alice",
        )

    def test_deleted_original_shows_empty_content_and_is_marked(self) -> None:
        context = domain.reply_context(stored(1, content="secret", deleted=True))
        assert context.content == ""
        assert context.is_deleted is True

    def test_media_original_without_content(self) -> None:
        assert domain.reply_context(stored(1, content=None)).content == ""


class TestSocketMessage:
    def test_dm_message_has_every_always_present_field(self) -> None:
        message = domain.to_socket_message(stored(3), None)
        assert message.conversation_id == "c_1"
        assert message.group_id is None
        assert message.created_at == "2026-01-01T12:00:00.000Z"
        assert (message.is_edited, message.is_deleted, message.reactions, message.pinned) == (
            False,
            False,
            [],
            False,
        )

    def test_group_message_with_reply(self) -> None:
        original = stored(1, chat_id="g_1")
        reply = stored(2, chat_id="g_1", sender_id="bob", reply_to_id=original.id)
        message = domain.to_socket_message(reply, original)
        assert message.group_id == "g_1"
        assert message.conversation_id is None
        assert message.reply_to is not None
        assert message.reply_to.message_id == original.id

    def test_tombstone_loses_content(self) -> None:
        message = domain.to_socket_message(stored(1, deleted=True), None)
        assert message.is_deleted is True
        assert message.content is None
        assert message.deleted_at == "2026-01-01T12:01:00.000Z"


# --- time ---------------------------------------------------------------------------


class TestReadAt:
    def test_absent_is_now(self) -> None:
        assert domain.resolve_read_at(None, T0) == T0

    def test_past_is_kept(self) -> None:
        earlier = T0 - timedelta(minutes=5)
        assert domain.resolve_read_at(earlier, T0) == earlier

    def test_future_is_clamped_to_now(self) -> None:
        assert domain.resolve_read_at(T0 + timedelta(days=1), T0) == T0

    def test_naive_is_utc(self) -> None:
        naive = datetime(2026, 1, 1, 11, 0, 0)
        assert domain.resolve_read_at(naive, T0) == naive.replace(tzinfo=UTC)


def test_to_millis_cuts_microseconds() -> None:
    moment = datetime(2026, 1, 1, 0, 0, 0, 123_456, tzinfo=UTC)
    assert domain.to_millis(moment).microsecond == 123_000


# --- sync ---------------------------------------------------------------------------


class TestSyncWindow:
    def test_up_to_date_or_ahead_sends_nothing(self) -> None:
        assert domain.sync_window(10, 10) is None
        assert domain.sync_window(12, 10) is None

    def test_behind_within_the_cap(self) -> None:
        window = domain.sync_window(5, 1_005)
        assert window == domain.SyncWindow(after_seq=5, limited=False)

    def test_past_the_cap_sends_the_newest_1000(self) -> None:
        window = domain.sync_window(5, 1_006)
        assert window == domain.SyncWindow(after_seq=6, limited=True)
        assert domain.sync_window(0, 5_000) == domain.SyncWindow(after_seq=4_000, limited=True)


class TestSplitBatches:
    def test_nothing_missed_is_no_batch(self) -> None:
        assert domain.split_batches([], "g_1", limited=False) == []

    def test_batches_of_200_in_seq_order(self) -> None:
        batches = domain.split_batches(socket_messages(450), "g_1", limited=False)
        assert [len(b.messages) for b in batches] == [200, 200, 50]
        seqs = [m.seq for b in batches for m in b.messages]
        assert seqs == list(range(1, 451))
        assert all(b.group_id == "g_1" and b.conversation_id is None for b in batches)
        assert not any(b.limited for b in batches)

    def test_the_1000_cap_marks_only_the_last_batch(self) -> None:
        window = domain.sync_window(0, 1_500)
        assert window is not None
        newest = [
            domain.to_socket_message(stored(s, chat_id="c_9"), None)
            for s in range(window.after_seq + 1, 1_501)
        ]
        batches = domain.split_batches(newest, "c_9", limited=window.limited)
        assert [len(b.messages) for b in batches] == [200] * 5
        assert [b.limited for b in batches] == [False, False, False, False, True]
        assert batches[0].messages[0].seq == 501
        assert batches[-1].messages[-1].seq == 1_500
        assert all(b.conversation_id == "c_9" for b in batches)

    def test_limited_with_an_empty_window_still_tells_the_client(self) -> None:
        batches = domain.split_batches([], "g_1", limited=True)
        assert len(batches) == 1
        assert batches[0].messages == []
        assert batches[0].limited is True


def test_cursor_map_keeps_the_highest_seq_per_chat() -> None:
    cursors = [
        SyncCursor(conversation_id="c_1", seq=4),
        SyncCursor(group_id="g_1", seq=2),
        SyncCursor(conversation_id="c_1", seq=9),
    ]
    assert domain.cursor_map(cursors) == {
        "c_1": domain.Cursor(seq=9),
        "g_1": domain.Cursor(seq=2),
    }


def test_cursor_map_keeps_the_highest_rev_and_no_rev_means_new_only() -> None:
    cursors = [
        SyncCursor(conversation_id="c_1", seq=4, rev=7),
        SyncCursor(conversation_id="c_1", seq=3, rev=9),
        SyncCursor(group_id="g_1", seq=2),
    ]
    held = domain.cursor_map(cursors)
    assert held["c_1"] == domain.Cursor(seq=4, rev=9)
    assert domain.changes_wanted(held["c_1"], 10) is True
    assert domain.changes_wanted(held["c_1"], 9) is False
    assert domain.changes_wanted(held["g_1"], 10) is False


def test_visible_chats_are_those_with_messages_or_named() -> None:
    chats = [
        ChatCounters(chat_id="c_empty", last_seq=0, unread=0),
        ChatCounters(chat_id="c_named", last_seq=0, unread=0),
        ChatCounters(chat_id="g_busy", last_seq=3, unread=1),
    ]
    visible = domain.visible_chats(chats, {"c_named": 0})
    assert [c.chat_id for c in visible] == ["c_named", "g_busy"]


# --- reads --------------------------------------------------------------------------


class TestWatermark:
    def test_moves_to_the_highest_seq_named(self) -> None:
        assert domain.advanced_watermark(3, [stored(5), stored(4)]) == 5

    def test_never_moves_back(self) -> None:
        assert domain.advanced_watermark(9, [stored(5)]) == 9

    def test_newly_read_counts_unread_messages_of_others(self) -> None:
        messages = [
            stored(2, sender_id="bob"),  # at or below the watermark: read before
            stored(4, sender_id="bob"),
            stored(5, sender_id="amy"),  # the reader's own
            stored(6, sender_id="bob"),
        ]
        assert domain.newly_read(messages, 3, "amy") == 2


def test_by_chat_and_unique_ids_keep_order() -> None:
    assert domain.unique_ids(["b", "a", "b", "c"]) == ["b", "a", "c"]
    grouped = domain.by_chat([stored(2, chat_id="g_1"), stored(1), stored(1, chat_id="g_1")])
    assert list(grouped) == ["g_1", "c_1"]
    assert [m.seq for m in grouped["g_1"]] == [2, 1]
