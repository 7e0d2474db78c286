"""SQL and row helpers of the SQLite messages store: statements, row conversions, and the
steps one transaction is made of (resolve a chat, take a rev, read a page)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime

import msgspec

from chat_contracts import DomainError, ErrorCode
from chat_messages import domain
from chat_messages.domain import (
    Conversation,
    ConversationTarget,
    GroupTarget,
    MessageDraft,
    Page,
    PeerTarget,
    ReactionRow,
    StoredMessage,
    Target,
)
from chat_runtime.clock import iso

MESSAGE_COLUMNS = (
    "id, chat_id, seq, rev, sender_id, sender_name, sender_avatar, client_message_id, type, "
    "content, media_url, reply_to_id, created_at, edited_at, deleted_at, pinned_at, pinned_by, "
    "fwd_message_id, fwd_sender_id, fwd_sender_name"
)
M_COLUMNS = ", ".join(f"m.{c.strip()}" for c in MESSAGE_COLUMNS.split(","))

# Id lists go in as one JSON parameter (`json_each`): no statement per id and no
# SQLite bound-parameter limit (32,766) for a user in many chats.
MESSAGES_BY_IDS = (
    f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id IN (SELECT value FROM json_each(?))"
)

NOT_HIDDEN = "NOT EXISTS (SELECT 1 FROM hidden h WHERE h.user_id = ? AND h.message_id = m.id)"

CHAT_COUNTERS = """
WITH mine(chat_id) AS (
    SELECT id FROM conversations WHERE user_a = :user
    UNION
    SELECT id FROM conversations WHERE user_b = :user
    UNION
    SELECT value FROM json_each(:groups)
)
SELECT mine.chat_id AS chat_id,
       COALESCE(chats.last_seq, 0) AS last_seq,
       COALESCE(chats.last_rev, 0) AS last_rev,
       (SELECT COUNT(*) FROM messages AS m
         WHERE m.chat_id = mine.chat_id
           AND m.seq > COALESCE(reads.last_read_seq, 0)
           AND m.sender_id != :user) AS unread,
       mutes.user_id IS NOT NULL AS muted,
       mutes.muted_until AS muted_until
FROM mine
LEFT JOIN chats ON chats.chat_id = mine.chat_id
LEFT JOIN reads ON reads.user_id = :user AND reads.chat_id = mine.chat_id
LEFT JOIN mutes ON mutes.user_id = :user AND mutes.chat_id = mine.chat_id
ORDER BY mine.chat_id
"""

NEXT_SEQ = """
INSERT INTO chats (chat_id, last_seq, last_rev) VALUES (?, 1, 1)
ON CONFLICT (chat_id) DO UPDATE SET last_seq = last_seq + 1, last_rev = last_rev + 1
RETURNING last_seq, last_rev
"""

NEXT_REV = """
INSERT INTO chats (chat_id, last_seq, last_rev) VALUES (?, 0, 1)
ON CONFLICT (chat_id) DO UPDATE SET last_rev = last_rev + 1
RETURNING last_rev
"""

RAISE_WATERMARK = """
INSERT INTO reads (user_id, chat_id, last_read_seq) VALUES (?, ?, ?)
ON CONFLICT (user_id, chat_id) DO UPDATE
SET last_read_seq = max(last_read_seq, excluded.last_read_seq)
"""


#: New messages are added to the search index in chunks of this many (see
#: `sqlite_schema`, step 3), and whatever is pending before each search.
INDEX_CHUNK = 256

INDEX_PENDING = """
INSERT INTO messages_fts (rowid, content)
SELECT rowid, content FROM messages WHERE rowid > ? AND rowid <= ? AND content IS NOT NULL
"""


def index_pending(conn: sqlite3.Connection) -> int:
    """Add every message not in the search index yet; how many rows were looked at."""
    (upto,) = conn.execute("SELECT indexed_upto FROM fts_state WHERE id = 1").fetchone()
    (last,) = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM messages").fetchone()
    if last <= upto:
        return 0
    conn.execute(INDEX_PENDING, (upto, last))
    conn.execute("UPDATE fts_state SET indexed_upto = ? WHERE id = 1", (last,))
    return int(last - upto)


def json_list(values: Iterable[str]) -> str:
    return json.dumps(list(values))


def message(row: sqlite3.Row) -> StoredMessage:
    return msgspec.convert(dict(zip(row.keys(), row, strict=True)), StoredMessage)


def conversation(row: sqlite3.Row) -> Conversation:
    return msgspec.convert(dict(zip(row.keys(), row, strict=True)), Conversation)


def opt_iso(value: datetime | None) -> str | None:
    return iso(value) if value is not None else None


def message_of(row: sqlite3.Row) -> StoredMessage:
    """A message from a row that has more columns than the message's."""
    fields = {k: row[k] for k in row.keys() if k not in ("h_at", "h_rev")}  # noqa: SIM118 - a Row iterates values
    return msgspec.convert(fields, StoredMessage)


def next_rev(conn: sqlite3.Connection, chat_id: str) -> int:
    (rev,) = conn.execute(NEXT_REV, (chat_id,)).fetchone()
    return int(rev)


def touch(conn: sqlite3.Connection, message: StoredMessage) -> StoredMessage:
    """Give `message` its chat's next rev (a change that is not in the message row)."""
    rev = next_rev(conn, message.chat_id)
    conn.execute("UPDATE messages SET rev = ? WHERE id = ?", (rev, message.id))
    return msgspec.structs.replace(message, rev=rev)


def require_message(conn: sqlite3.Connection, message_id: str) -> StoredMessage:
    message = get_message(conn, message_id)
    if message is None:
        raise DomainError(ErrorCode.NOT_FOUND, "message not found", field="messageId")
    return message


def get_message(conn: sqlite3.Connection, message_id: str | None) -> StoredMessage | None:
    if message_id is None:
        return None
    row = conn.execute(
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,)
    ).fetchone()
    return message(row) if row is not None else None


def get_conversation(conn: sqlite3.Connection, chat_id: str) -> Conversation | None:
    if not domain.is_dm(chat_id):
        return None
    row = conn.execute(
        "SELECT id, user_a, user_b, created_at FROM conversations WHERE id = ?", (chat_id,)
    ).fetchone()
    return conversation(row) if row is not None else None


def find_dm(conn: sqlite3.Connection, target: PeerTarget) -> Conversation | None:
    row = conn.execute(
        "SELECT id, user_a, user_b, created_at FROM conversations WHERE user_a = ? AND user_b = ?",
        (target.user_a, target.user_b),
    ).fetchone()
    return conversation(row) if row is not None else None


def page(
    conn: sqlite3.Connection, messages: list[StoredMessage], *, has_more: bool = False
) -> Page:
    """A page with the originals its messages quote and their reactions."""
    return Page(
        messages=messages,
        replies=replies(conn, messages),
        reactions=reactions(conn, [m.id for m in messages]),
        has_more=has_more,
    )


def replies(
    conn: sqlite3.Connection, messages: Iterable[StoredMessage]
) -> dict[str, StoredMessage]:
    ids = {m.reply_to_id for m in messages if m.reply_to_id is not None}
    if not ids:
        return {}
    rows = conn.execute(MESSAGES_BY_IDS, (json_list(ids),)).fetchall()
    return {r["id"]: message(r) for r in rows}


def reactions(conn: sqlite3.Connection, message_ids: Sequence[str]) -> dict[str, list[ReactionRow]]:
    if not message_ids:
        return {}
    rows = conn.execute(
        "SELECT message_id, emoji, user_id FROM reactions"
        " WHERE message_id IN (SELECT value FROM json_each(?)) ORDER BY id",
        (json_list(message_ids),),
    ).fetchall()
    found: dict[str, list[ReactionRow]] = {}
    for r in rows:
        found.setdefault(r["message_id"], []).append(ReactionRow(r["emoji"], r["user_id"]))
    return found


def resolve_for_write(
    conn: sqlite3.Connection, target: Target, draft: MessageDraft, new_conversation_id: str
) -> tuple[str, Conversation | None, bool]:
    """(chat id, the DM if any, whether the DM was created now)."""
    if isinstance(target, GroupTarget):
        return target.group_id, None, False
    if isinstance(target, ConversationTarget):
        found = get_conversation(conn, target.conversation_id)
        conversation = domain.require_participant(found, draft.sender_id)
        return conversation.id, conversation, False
    existing = find_dm(conn, target)
    if existing is not None:
        return existing.id, existing, False
    created = Conversation(
        id=new_conversation_id,
        user_a=target.user_a,
        user_b=target.user_b,
        created_at=draft.created_at,
    )
    # BEGIN IMMEDIATE holds the write lock, so no other process can insert this pair
    # between the look-up above and this insert.
    conn.execute(
        "INSERT INTO conversations (id, user_a, user_b, created_at) VALUES (?, ?, ?, ?)",
        (created.id, created.user_a, created.user_b, iso(created.created_at)),
    )
    return created.id, created, True


def resolve_for_read(conn: sqlite3.Connection, target: Target, user_id: str) -> str | None:
    """The chat id, None for a DM pair that has no conversation yet."""
    if isinstance(target, GroupTarget):
        return target.group_id
    if isinstance(target, ConversationTarget):
        found = get_conversation(conn, target.conversation_id)
        return domain.require_participant(found, user_id).id
    existing = find_dm(conn, target)
    return existing.id if existing is not None else None
