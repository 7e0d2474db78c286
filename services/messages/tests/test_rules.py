"""The pure lifecycle rules: windows, emoji, reaction and pin limits, search input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chat_contracts import DomainError, ErrorCode
from chat_messages import rules
from chat_messages.domain import ReactionRow, StoredMessage
from chat_messages.rules import Rules

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)


def message(**changes: object) -> StoredMessage:
    fields: dict[str, object] = {
        "id": "m_1", "sender_id": "amy", "sender_name": "Amy", "sender_avatar": None,
        "client_message_id": "c", "type": "TEXT", "content": "hi", "media_url": None,
        "reply_to_id": None, "created_at": T0, "chat_id": "g_1", "seq": 1, "rev": 1,
    }  # fmt: skip
    fields.update(changes)
    return StoredMessage(**fields)  # type: ignore[arg-type]


def code_of(call: object) -> ErrorCode | None:
    try:
        call()  # type: ignore[operator]
    except DomainError as exc:
        return exc.code
    return None


@pytest.mark.parametrize(
    ("after", "editor", "expected"),
    [
        (timedelta(minutes=15), "amy", None),
        (timedelta(minutes=15, milliseconds=1), "amy", ErrorCode.EDIT_WINDOW_EXPIRED),
        (timedelta(minutes=1), "bob", ErrorCode.FORBIDDEN),
    ],
)
def test_edit_window_and_owner(after: timedelta, editor: str, expected: ErrorCode | None) -> None:
    assert code_of(lambda: rules.check_edit(message(), editor, T0 + after, Rules())) is expected


def test_a_tombstone_cannot_be_edited() -> None:
    dead = message(deleted_at=T0, content=None)
    assert code_of(lambda: rules.check_edit(dead, "amy", T0, Rules())) is ErrorCode.CONFLICT


def test_delete_window_is_configurable_and_admins_have_none() -> None:
    short = Rules(delete_window=timedelta(minutes=5))
    late = T0 + timedelta(minutes=6)
    expired = code_of(
        lambda: rules.check_delete(message(), "amy", is_admin=False, now=late, rules=short)
    )
    assert expired is ErrorCode.DELETE_WINDOW_EXPIRED
    years = T0 + timedelta(days=900)
    assert rules.check_delete(message(), "bob", is_admin=True, now=years, rules=short) is None


@pytest.mark.parametrize("text", ["👍", "👍🏽", "👩‍👩‍👧", "🇫🇷", "1️⃣", "❤️"])
def test_single_emoji_graphemes_are_accepted(text: str) -> None:
    assert rules.check_emoji(text) == text


@pytest.mark.parametrize("text", ["a", "lol", "👍👍", "👍 ", "x👍", "🇫"])
def test_text_and_several_emojis_are_refused(text: str) -> None:
    assert code_of(lambda: rules.check_emoji(text)) is ErrorCode.VALIDATION_ERROR


def test_reaction_limits_let_users_join_an_existing_emoji() -> None:
    small = Rules(max_reaction_emojis=2, max_reactions_per_user=3)
    rows = [ReactionRow("👍", "amy"), ReactionRow("🎉", "bob")]
    assert rules.check_reaction_limits(rows, "cat", "👍", small) is None
    full = code_of(lambda: rules.check_reaction_limits(rows, "cat", "😀", small))
    assert full is ErrorCode.LIMIT_EXCEEDED
    mine = [ReactionRow(e, "amy") for e in "abc"]
    per_user = code_of(lambda: rules.check_reaction_limits(mine, "amy", "a", small))
    assert per_user is ErrorCode.LIMIT_EXCEEDED


def test_pin_policy() -> None:
    default = Rules()
    assert (
        code_of(lambda: rules.check_pin_permission(is_group=True, is_admin=False, rules=default))
        is ErrorCode.FORBIDDEN
    )
    open_groups = Rules(pin_admins_only=False)
    assert rules.check_pin_permission(is_group=True, is_admin=False, rules=open_groups) is None
    assert rules.check_pin_permission(is_group=False, is_admin=False, rules=default) is None
    assert code_of(lambda: rules.check_pin_count(50, default)) is ErrorCode.LIMIT_EXCEEDED


def test_search_words_fts_query_and_cursor() -> None:
    assert rules.search_words('Café "au" LAIT*') == ["café", "au", "lait"]
    assert rules.fts5_query(["caf", 'a"b']) == '"caf" "a""b"*'
    assert code_of(lambda: rules.search_words("?!")) is ErrorCode.VALIDATION_ERROR
    cursor = rules.decode_cursor(rules.encode_cursor(message()))
    assert (cursor.created_at, cursor.message_id) == (T0, "m_1")
    assert code_of(lambda: rules.decode_cursor("garbage")) is ErrorCode.VALIDATION_ERROR
