"""Storage of the messages service: the repository Protocol and its result types.

One `MessageStore` Protocol, two implementations run by one contract suite:
`SqliteMessageStore` (`store.sqlite`, the embedded default) and `MongoMessageStore`
(`store.mongo`).

Each store method is everything one command needs from storage, so that a command
costs one SQLite thread hop (ANCHORS.md: the hop costs more than the ~22 µs commit)
and, for the writes, one transaction. Rules that need stored data (is the actor in
this DM, is the message still inside the edit window) run inside that transaction
through the pure checks of `domain` / `rules`, so nothing can change between check
and write. Every stored change of a message takes its chat's next `rev` in the same
transaction (SQLite) or the same atomic step order (MongoDB), see PROTOCOL.md `sync`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

import msgspec

from chat_messages.domain import (
    ChatCounters,
    Conversation,
    HiddenMessage,
    MessageDraft,
    Page,
    ReactionRow,
    StoredMessage,
    Target,
)
from chat_messages.rules import Rules, SearchCursor


class Appended(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of `append`.

    - `duplicate`: the sender had already sent this `clientMessageId`; `message` is the
      first one and nothing was written.
    - `conversation`: the DM the message is in (None for a group).
    - `dm_created`: the DM's rooms must be announced to both participants now.
    """

    message: StoredMessage
    reply_to: StoredMessage | None
    duplicate: bool
    conversation: Conversation | None = None
    dm_created: bool = False


class ReadLookup(msgspec.Struct, frozen=True, kw_only=True):
    """Named messages that exist, and the DMs they are in (by id) for the member check."""

    messages: list[StoredMessage]
    conversations: dict[str, Conversation]


class Changed(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of a change to one message.

    `changed` is False when the command changed nothing (a retried edit with the same
    content, a second delete, a reaction already there): no `rev` was taken and no
    event must go out. `message` is the message as stored after the command.
    """

    message: StoredMessage
    changed: bool
    #: Reactions of the message after the change (reaction commands only).
    reactions: list[ReactionRow] = []
    #: Delete for everyone: the message was pinned and is unpinned with it.
    was_pinned: bool = False


class Changes(msgspec.Struct, frozen=True, kw_only=True):
    """Older messages of a chat changed after a `rev`, for `sync`.

    `page` holds them in `rev` order as their current state; `hidden` the messages the
    viewer deleted for themselves after that `rev`; `limited` when more remain.
    """

    page: Page
    hidden: list[HiddenMessage] = []
    limited: bool = False


class EditVersion(msgspec.Struct, frozen=True, kw_only=True):
    """A previous content of an edited message and when it was written."""

    content: str
    written_at: datetime


class MessageStore(Protocol):
    """What the handlers need from storage."""

    async def open(self) -> None:
        """Connect and create or migrate the schema / indexes (idempotent)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...

    async def append(
        self, target: Target, draft: MessageDraft, *, new_conversation_id: str
    ) -> Appended:
        """Store a message with the chat's next seq and rev, atomically with its side effects.

        Resolves `target` (a `PeerTarget` DM is created under `new_conversation_id`
        when missing), applies idempotency on (sender, clientMessageId), checks the
        quoted message, and moves the sender's read watermark to the new seq.
        Raises `DomainError` NOT_FOUND / FORBIDDEN from the domain checks.
        """
        ...

    async def history(
        self, target: Target, user_id: str, *, before_seq: int | None, limit: int
    ) -> Page:
        """Up to `limit` messages with seq < `before_seq`, newest first, without those
        `user_id` deleted for themselves.

        A `PeerTarget` with no DM yet is an empty page; a `ConversationTarget` is
        checked for `user_id`. Group membership is the caller's check.
        """
        ...

    async def chat_of(self, target: Target, user_id: str) -> str | None:
        """The chat id `target` names (None for a DM pair with no conversation yet);
        a `ConversationTarget` is checked for `user_id` (NOT_FOUND / FORBIDDEN)."""
        ...

    async def chat_counters(self, user_id: str, group_ids: Sequence[str]) -> list[ChatCounters]:
        """Every DM of `user_id` and every chat in `group_ids`: last seq and rev, unread
        count, and `user_id`'s mute row. Chats without any message yet have `last_seq` 0.
        """
        ...

    async def messages_after(
        self, chat_id: str, viewer_id: str, *, after_seq: int, through_seq: int, limit: int
    ) -> Page:
        """Messages with `after_seq` < seq <= `through_seq`, in seq order, at most `limit`,
        without those `viewer_id` deleted for themselves."""
        ...

    async def changed_since(
        self, chat_id: str, viewer_id: str, *, after_rev: int, through_seq: int, limit: int
    ) -> Changes:
        """Messages with seq <= `through_seq` whose latest change has rev > `after_rev`,
        in rev order (at most `limit`), and the viewer's hides after `after_rev`."""
        ...

    async def page_of(self, message_ids: Sequence[str]) -> Page:
        """The named messages that exist (in the given order), with their reply
        contexts and reactions."""
        ...

    async def lookup_for_read(self, message_ids: Sequence[str]) -> ReadLookup:
        """The named messages that exist, with the DMs among their chats."""
        ...

    async def advance_reads(self, user_id: str, watermarks: Mapping[str, int]) -> dict[str, int]:
        """Raise `user_id`'s watermark of each chat to at least the given seq.

        Returns the watermarks as they were before (0 for a chat never read). A
        watermark never moves back.
        """
        ...

    async def conversation_ids(self, user_id: str) -> list[str]:
        """Ids of every DM `user_id` is in."""
        ...

    async def edit(
        self, message_id: str, editor_id: str, content: str, *, now: datetime, rules: Rules
    ) -> Changed:
        """Replace the content of the editor's own message inside the edit window,
        keeping the previous content as a version. Same content again: unchanged.
        Raises CONFLICT (tombstone), FORBIDDEN (not the sender), EDIT_WINDOW_EXPIRED."""
        ...

    async def edits(self, message_id: str) -> list[EditVersion]:
        """Every previous content of a message, oldest first."""
        ...

    async def delete_for_everyone(
        self, message_id: str, actor_id: str, *, is_admin: bool, now: datetime, rules: Rules
    ) -> Changed:
        """Make the message a tombstone (content, media, reactions and pin removed).
        A tombstone again: unchanged. Raises FORBIDDEN / DELETE_WINDOW_EXPIRED."""
        ...

    async def hide(self, message_id: str, user_id: str, *, now: datetime) -> Changed:
        """Delete for me: hide the message for `user_id` only (the hide takes a chat rev,
        so that `user_id`'s next `sync` learns of it). Already hidden: unchanged."""
        ...

    async def add_reaction(
        self, message_id: str, user_id: str, emoji: str, *, now: datetime, rules: Rules
    ) -> Changed:
        """Add (user, emoji); already there: unchanged. Raises CONFLICT (tombstone) and
        LIMIT_EXCEEDED (distinct emojis per message, reactions per user)."""
        ...

    async def remove_reaction(self, message_id: str, user_id: str, emoji: str) -> Changed:
        """Remove (user, emoji); not there: unchanged."""
        ...

    async def set_pin(
        self, message_id: str, actor_id: str, *, pinned: bool, now: datetime, rules: Rules
    ) -> Changed:
        """Pin or unpin; already in that state: unchanged. Raises CONFLICT (tombstone)
        and LIMIT_EXCEEDED (pins per chat)."""
        ...

    async def pins(self, chat_id: str) -> Page:
        """The pinned messages of a chat, most recently pinned first."""
        ...

    async def search(
        self,
        viewer_id: str,
        chat_ids: Sequence[str],
        words: Sequence[str],
        *,
        before: SearchCursor | None,
        limit: int,
    ) -> Page:
        """Messages of `chat_ids` matching every word (the last one as a prefix), newest
        first, never tombstones nor messages the viewer deleted for themselves."""
        ...

    async def set_mute(self, user_id: str, chat_id: str, until: datetime | None) -> bool:
        """Mute a chat for `user_id` until `until` (None = forever); False if unchanged."""
        ...

    async def clear_mute(self, user_id: str, chat_id: str) -> bool:
        """Unmute; False if there was no mute."""
        ...

    async def muted_among(self, chat_id: str, user_ids: Sequence[str], now: datetime) -> list[str]:
        """Those of `user_ids` who have `chat_id` muted at `now` (push notifications)."""
        ...
