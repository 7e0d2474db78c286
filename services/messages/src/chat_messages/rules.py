"""Pure rules of the message lifecycle: edit and delete windows, reactions, pins, search.

Nothing here does I/O or reads the clock; stores call the checks inside the
transaction of the change they guard, handlers pass `now` in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Final

import emoji as emoji_data
import msgspec

from chat_contracts import DomainError, ErrorCode, limits
from chat_messages.domain import ReactionRow, StoredMessage
from chat_runtime.clock import iso, parse_iso

#: Search: at most this many words are used (the query itself is bounded to 256 chars).
MAX_SEARCH_WORDS: Final = 16

# Words as both stores' tokenizers see them: runs of letters and digits (SQLite FTS5
# `unicode61`, MongoDB's text index). Everything else separates words.
_WORD = re.compile(r"\w+", re.UNICODE)


class Rules(msgspec.Struct, frozen=True, kw_only=True):
    """The configurable rules (PROTOCOL.md "Rules the request list asks about")."""

    #: Own messages may be edited this long after `createdAt` (15 min).
    edit_window: timedelta = timedelta(seconds=limits.EDIT_WINDOW_S)
    #: The sender may delete for everyone this long after `createdAt` (1 h).
    delete_window: timedelta = timedelta(seconds=limits.DELETE_WINDOW_S)
    #: In groups only ADMINs pin and unpin (both parties always may in DMs).
    pin_admins_only: bool = True
    max_pins: int = limits.MAX_PINS_PER_CHAT
    max_reaction_emojis: int = limits.MAX_REACTION_EMOJIS
    max_reactions_per_user: int = limits.MAX_REACTIONS_PER_USER


# --- edit and delete -----------------------------------------------------------------


def require_alive(message: StoredMessage) -> None:
    """A tombstone cannot be edited, reacted to, pinned or forwarded."""
    if message.is_deleted:
        raise DomainError(ErrorCode.CONFLICT, "message was deleted", field="messageId")


def check_edit(message: StoredMessage, editor_id: str, now: datetime, rules: Rules) -> None:
    """Own messages only, not a tombstone, inside the edit window."""
    require_alive(message)
    if message.sender_id != editor_id:
        raise DomainError(ErrorCode.FORBIDDEN, "only the sender may edit", field="messageId")
    if now - message.created_at > rules.edit_window:
        raise DomainError(ErrorCode.EDIT_WINDOW_EXPIRED, "edit window expired", field="messageId")


def check_delete(
    message: StoredMessage, actor_id: str, *, is_admin: bool, now: datetime, rules: Rules
) -> None:
    """Delete for everyone: a group ADMIN any time; the sender inside the window."""
    if is_admin:
        return
    if message.sender_id != actor_id:
        raise DomainError(
            ErrorCode.FORBIDDEN, "only the sender or a group admin may delete", field="messageId"
        )
    if now - message.created_at > rules.delete_window:
        raise DomainError(
            ErrorCode.DELETE_WINDOW_EXPIRED, "delete window expired", field="messageId"
        )


# --- reactions -------------------------------------------------------------------------


def check_emoji(text: str) -> str:
    """A single emoji grapheme (skin tones, ZWJ sequences, flags, keycaps), judged by the
    `emoji` package's Unicode emoji data; anything else is a VALIDATION_ERROR."""
    if not emoji_data.is_emoji(text):
        raise DomainError(ErrorCode.VALIDATION_ERROR, "emoji must be a single emoji", field="emoji")
    return text


def check_reaction_limits(
    existing: Iterable[ReactionRow], user_id: str, emoji: str, rules: Rules
) -> None:
    """At most 50 distinct emojis per message (joining one already there always works)
    and 20 reactions per user per message."""
    emojis: set[str] = set()
    mine = 0
    for row in existing:
        emojis.add(row.emoji)
        mine += row.user_id == user_id
    if emoji not in emojis and len(emojis) >= rules.max_reaction_emojis:
        raise DomainError(
            ErrorCode.LIMIT_EXCEEDED,
            f"at most {rules.max_reaction_emojis} different emojis per message",
            field="emoji",
        )
    if mine >= rules.max_reactions_per_user:
        raise DomainError(
            ErrorCode.LIMIT_EXCEEDED,
            f"at most {rules.max_reactions_per_user} reactions per user per message",
            field="emoji",
        )


# --- pins ------------------------------------------------------------------------------


def check_pin_permission(*, is_group: bool, is_admin: bool, rules: Rules) -> None:
    """Both parties of a DM; in groups ADMINs only unless configured otherwise."""
    if is_group and rules.pin_admins_only and not is_admin:
        raise DomainError(ErrorCode.FORBIDDEN, "only group admins may pin", field="messageId")


def check_pin_count(pinned_now: int, rules: Rules) -> None:
    """At most `max_pins` (50) pinned messages per chat."""
    if pinned_now >= rules.max_pins:
        raise DomainError(
            ErrorCode.LIMIT_EXCEEDED, f"at most {rules.max_pins} pins per chat", field="messageId"
        )


# --- search ----------------------------------------------------------------------------


class SearchCursor(msgspec.Struct, frozen=True, kw_only=True):
    """Where the next page starts: strictly older than (`created_at`, `message_id`)."""

    created_at: datetime
    message_id: str


def search_words(query: str) -> list[str]:
    """The words of a query (lower-cased); VALIDATION_ERROR when it has none."""
    words = [w.lower() for w in _WORD.findall(query)][:MAX_SEARCH_WORDS]
    if not words:
        raise DomainError(ErrorCode.VALIDATION_ERROR, "query has no words", field="query")
    return words


def encode_cursor(message: StoredMessage) -> str:
    """The opaque `cursor` after `message`."""
    return f"{iso(message.created_at)}~{message.id}"


def decode_cursor(text: str) -> SearchCursor:
    """Inverse of `encode_cursor`; VALIDATION_ERROR for anything else."""
    stamp, sep, message_id = text.partition("~")
    try:
        if not sep or not message_id:
            raise ValueError(text)
        return SearchCursor(created_at=parse_iso(stamp), message_id=message_id)
    except ValueError:
        raise DomainError(ErrorCode.VALIDATION_ERROR, "malformed cursor", field="cursor") from None


def fts5_query(words: Iterable[str]) -> str:
    """An FTS5 MATCH expression: every word, each quoted (no FTS syntax from users), the
    last one as a prefix so that results appear while the user is still typing."""
    quoted = ['"' + w.replace('"', '""') + '"' for w in words]
    quoted[-1] += "*"
    return " ".join(quoted)
