"""`MessageStore` on one SQLite file (several worker processes may share it).

Each command is one `read` or `write` call of `SqliteDatabase`. A write's checks, its
change and the chat's next `rev` share one `BEGIN IMMEDIATE` transaction: the write
lock serializes writers across processes, so seqs and revs have no gaps, idempotency
has no race, and reaction aggregates are exact however many users react at once.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from chat_contracts import DomainError, ErrorCode
from chat_messages import domain
from chat_messages import rules as policy
from chat_messages.domain import (
    ChatCounters,
    Conversation,
    ConversationTarget,
    GroupTarget,
    HiddenMessage,
    MessageDraft,
    Page,
    PeerTarget,
    ReactionRow,
    StoredMessage,
    Target,
)
from chat_messages.rules import Rules, SearchCursor
from chat_messages.store import Appended, Changed, Changes, EditVersion, ReadLookup
from chat_messages.store.sqlite_schema import migrate
from chat_runtime.clock import iso, parse_iso
from chat_runtime.sqlite import SqliteDatabase

_MESSAGE_COLUMNS = (
    "id, chat_id, seq, rev, sender_id, sender_name, sender_avatar, client_message_id, type, "
    "content, media_url, reply_to_id, created_at, edited_at, deleted_at, pinned_at, pinned_by, "
    "fwd_message_id, fwd_sender_id, fwd_sender_name"
)
_M_COLUMNS = ", ".join(f"m.{c.strip()}" for c in _MESSAGE_COLUMNS.split(","))

# Id lists go in as one JSON parameter (`json_each`): no statement per id and no
# SQLite bound-parameter limit (32,766) for a user in many chats.
_MESSAGES_BY_IDS = (
    f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id IN (SELECT value FROM json_each(?))"
)

_NOT_HIDDEN = "NOT EXISTS (SELECT 1 FROM hidden h WHERE h.user_id = ? AND h.message_id = m.id)"

_CHAT_COUNTERS = """
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

_NEXT_SEQ = """
INSERT INTO chats (chat_id, last_seq, last_rev) VALUES (?, 1, 1)
ON CONFLICT (chat_id) DO UPDATE SET last_seq = last_seq + 1, last_rev = last_rev + 1
RETURNING last_seq, last_rev
"""

_NEXT_REV = """
INSERT INTO chats (chat_id, last_seq, last_rev) VALUES (?, 0, 1)
ON CONFLICT (chat_id) DO UPDATE SET last_rev = last_rev + 1
RETURNING last_rev
"""

_RAISE_WATERMARK = """
INSERT INTO reads (user_id, chat_id, last_read_seq) VALUES (?, ?, ?)
ON CONFLICT (user_id, chat_id) DO UPDATE
SET last_read_seq = max(last_read_seq, excluded.last_read_seq)
"""


#: New messages are added to the search index in chunks of this many (see
#: `sqlite_schema`, step 3), and whatever is pending before each search.
INDEX_CHUNK = 256

_INDEX_PENDING = """
INSERT INTO messages_fts (rowid, content)
SELECT rowid, content FROM messages WHERE rowid > ? AND rowid <= ? AND content IS NOT NULL
"""


def index_pending(conn: sqlite3.Connection) -> int:
    """Add every message not in the search index yet; how many rows were looked at."""
    (upto,) = conn.execute("SELECT indexed_upto FROM fts_state WHERE id = 1").fetchone()
    (last,) = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM messages").fetchone()
    if last <= upto:
        return 0
    conn.execute(_INDEX_PENDING, (upto, last))
    conn.execute("UPDATE fts_state SET indexed_upto = ? WHERE id = 1", (last,))
    return int(last - upto)


def _json_list(values: Iterable[str]) -> str:
    return json.dumps(list(values))


def _message(row: sqlite3.Row) -> StoredMessage:
    return msgspec.convert(dict(zip(row.keys(), row, strict=True)), StoredMessage)


def _conversation(row: sqlite3.Row) -> Conversation:
    return msgspec.convert(dict(zip(row.keys(), row, strict=True)), Conversation)


def _opt_iso(value: datetime | None) -> str | None:
    return iso(value) if value is not None else None


class SqliteMessageStore:
    """`MessageStore` on SQLite, schema by numbered migrations (`sqlite_schema`)."""

    def __init__(self, path: str | Path) -> None:
        self._db = SqliteDatabase(path, "")

    async def open(self) -> None:
        """Open the file and migrate it to the current schema version."""
        await self._db.open()
        await self._db.write(migrate)

    async def close(self) -> None:
        """Close the file and its thread."""
        await self._db.close()

    # --- new messages ---------------------------------------------------------------

    async def append(
        self, target: Target, draft: MessageDraft, *, new_conversation_id: str
    ) -> Appended:
        """See `MessageStore.append`."""

        def work(conn: sqlite3.Connection) -> Appended:
            row = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages"
                " WHERE sender_id = ? AND client_message_id = ?",
                (draft.sender_id, draft.client_message_id),
            ).fetchone()
            if row is not None:
                first = _message(row)
                return Appended(
                    message=first,
                    reply_to=_get_message(conn, first.reply_to_id),
                    duplicate=True,
                    conversation=_get_conversation(conn, first.chat_id),
                )
            chat_id, conversation, created = _resolve_for_write(
                conn, target, draft, new_conversation_id
            )
            reply_to = None
            if draft.reply_to_id is not None:
                original = _get_message(conn, draft.reply_to_id)
                reply_to = domain.require_reply_target(original, chat_id)
            seq, rev = conn.execute(_NEXT_SEQ, (chat_id,)).fetchone()
            message = draft.stored(chat_id, seq, rev)
            inserted = conn.execute(
                f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES ({', '.join('?' * 20)})",
                (
                    message.id,
                    message.chat_id,
                    message.seq,
                    message.rev,
                    message.sender_id,
                    message.sender_name,
                    message.sender_avatar,
                    message.client_message_id,
                    message.type,
                    message.content,
                    message.media_url,
                    message.reply_to_id,
                    iso(message.created_at),
                    None,
                    None,
                    None,
                    None,
                    message.fwd_message_id,
                    message.fwd_sender_id,
                    message.fwd_sender_name,
                ),
            )
            conn.execute(_RAISE_WATERMARK, (draft.sender_id, chat_id, seq))
            if (inserted.lastrowid or 0) % INDEX_CHUNK == 0:
                index_pending(conn)
            return Appended(
                message=message,
                reply_to=reply_to,
                duplicate=False,
                conversation=conversation,
                dm_created=created,
            )

        return await self._db.write(work)

    # --- reads ----------------------------------------------------------------------

    async def history(
        self, target: Target, user_id: str, *, before_seq: int | None, limit: int
    ) -> Page:
        """See `MessageStore.history`."""

        def work(conn: sqlite3.Connection) -> Page:
            chat_id = _resolve_for_read(conn, target, user_id)
            if chat_id is None:
                return Page(messages=[])
            # One row past `limit` tells whether an older page exists.
            rows = conn.execute(
                f"SELECT {_M_COLUMNS} FROM messages m WHERE m.chat_id = ? AND m.seq < ?"
                f" AND {_NOT_HIDDEN} ORDER BY m.seq DESC LIMIT ?",
                (chat_id, before_seq if before_seq is not None else 2**63 - 1, user_id, limit + 1),
            ).fetchall()
            return _page(conn, [_message(r) for r in rows[:limit]], has_more=len(rows) > limit)

        return await self._db.read(work)

    async def chat_of(self, target: Target, user_id: str) -> str | None:
        """See `MessageStore.chat_of`."""
        return await self._db.read(lambda conn: _resolve_for_read(conn, target, user_id))

    async def chat_counters(self, user_id: str, group_ids: Sequence[str]) -> list[ChatCounters]:
        """See `MessageStore.chat_counters`."""

        def work(conn: sqlite3.Connection) -> list[ChatCounters]:
            rows = conn.execute(
                _CHAT_COUNTERS, {"user": user_id, "groups": _json_list(group_ids)}
            ).fetchall()
            return [
                ChatCounters(
                    chat_id=r["chat_id"],
                    last_seq=r["last_seq"],
                    last_rev=r["last_rev"],
                    unread=r["unread"],
                    muted=bool(r["muted"]),
                    muted_until=parse_iso(r["muted_until"]) if r["muted_until"] else None,
                )
                for r in rows
            ]

        return await self._db.read(work)

    async def messages_after(
        self, chat_id: str, viewer_id: str, *, after_seq: int, through_seq: int, limit: int
    ) -> Page:
        """See `MessageStore.messages_after`."""

        def work(conn: sqlite3.Connection) -> Page:
            rows = conn.execute(
                f"SELECT {_M_COLUMNS} FROM messages m"
                f" WHERE m.chat_id = ? AND m.seq > ? AND m.seq <= ? AND {_NOT_HIDDEN}"
                " ORDER BY m.seq LIMIT ?",
                (chat_id, after_seq, through_seq, viewer_id, limit),
            ).fetchall()
            return _page(conn, [_message(r) for r in rows])

        return await self._db.read(work)

    async def changed_since(
        self, chat_id: str, viewer_id: str, *, after_rev: int, through_seq: int, limit: int
    ) -> Changes:
        """See `MessageStore.changed_since`."""

        def work(conn: sqlite3.Connection) -> Changes:
            rows = conn.execute(
                f"SELECT {_M_COLUMNS} FROM messages m"
                f" WHERE m.chat_id = ? AND m.rev > ? AND m.seq <= ? AND {_NOT_HIDDEN}"
                " ORDER BY m.rev LIMIT ?",
                (chat_id, after_rev, through_seq, viewer_id, limit + 1),
            ).fetchall()
            hidden_rows = conn.execute(
                f"SELECT {_M_COLUMNS}, h.hidden_at AS h_at, h.rev AS h_rev"
                " FROM hidden h JOIN messages m ON m.id = h.message_id"
                " WHERE h.user_id = ? AND h.chat_id = ? AND h.rev > ? AND m.seq <= ?"
                " ORDER BY h.rev LIMIT ?",
                (viewer_id, chat_id, after_rev, through_seq, limit),
            ).fetchall()
            hidden = [
                HiddenMessage(
                    message=_message_of(r), hidden_at=parse_iso(r["h_at"]), rev=r["h_rev"]
                )
                for r in hidden_rows
            ]
            page = _page(conn, [_message(r) for r in rows[:limit]])
            return Changes(page=page, hidden=hidden, limited=len(rows) > limit)

        return await self._db.read(work)

    async def page_of(self, message_ids: Sequence[str]) -> Page:
        """See `MessageStore.page_of`."""

        def work(conn: sqlite3.Connection) -> Page:
            rows = conn.execute(_MESSAGES_BY_IDS, (_json_list(message_ids),)).fetchall()
            found = {r["id"]: _message(r) for r in rows}
            return _page(conn, [found[i] for i in message_ids if i in found])

        return await self._db.read(work)

    async def lookup_for_read(self, message_ids: Sequence[str]) -> ReadLookup:
        """See `MessageStore.lookup_for_read`."""

        def work(conn: sqlite3.Connection) -> ReadLookup:
            rows = conn.execute(_MESSAGES_BY_IDS, (_json_list(message_ids),)).fetchall()
            found = {r["id"]: _message(r) for r in rows}
            messages = [found[i] for i in message_ids if i in found]
            dm_ids = {m.chat_id for m in messages if domain.is_dm(m.chat_id)}
            conversations = conn.execute(
                "SELECT id, user_a, user_b, created_at FROM conversations"
                " WHERE id IN (SELECT value FROM json_each(?))",
                (_json_list(dm_ids),),
            ).fetchall()
            return ReadLookup(
                messages=messages,
                conversations={r["id"]: _conversation(r) for r in conversations},
            )

        return await self._db.read(work)

    async def advance_reads(self, user_id: str, watermarks: Mapping[str, int]) -> dict[str, int]:
        """See `MessageStore.advance_reads`."""
        items = list(watermarks.items())

        def work(conn: sqlite3.Connection) -> dict[str, int]:
            before: dict[str, int] = {}
            for chat_id, seq in items:
                row = conn.execute(
                    "SELECT last_read_seq FROM reads WHERE user_id = ? AND chat_id = ?",
                    (user_id, chat_id),
                ).fetchone()
                before[chat_id] = row[0] if row is not None else 0
                conn.execute(_RAISE_WATERMARK, (user_id, chat_id, seq))
            return before

        return await self._db.write(work)

    async def conversation_ids(self, user_id: str) -> list[str]:
        """See `MessageStore.conversation_ids`."""

        def work(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT id FROM conversations WHERE user_a = ?"
                " UNION SELECT id FROM conversations WHERE user_b = ? ORDER BY id",
                (user_id, user_id),
            ).fetchall()
            return [r[0] for r in rows]

        return await self._db.read(work)

    # --- changes ----------------------------------------------------------------------

    async def edit(
        self, message_id: str, editor_id: str, content: str, *, now: datetime, rules: Rules
    ) -> Changed:
        """See `MessageStore.edit`."""

        def work(conn: sqlite3.Connection) -> Changed:
            message = _require_message(conn, message_id)
            if message.content == content and not message.is_deleted:
                # A retried edit: the same answer, no new version, no rev, no event.
                return Changed(message=message, changed=False)
            policy.check_edit(message, editor_id, now, rules)
            (versions,) = conn.execute(
                "SELECT COUNT(*) FROM edits WHERE message_id = ?", (message_id,)
            ).fetchone()
            conn.execute(
                "INSERT INTO edits (message_id, version, content, written_at) VALUES (?, ?, ?, ?)",
                (
                    message_id,
                    versions + 1,
                    message.content or "",
                    iso(message.edited_at or message.created_at),
                ),
            )
            rev = _next_rev(conn, message.chat_id)
            conn.execute(
                "UPDATE messages SET content = ?, edited_at = ?, rev = ? WHERE id = ?",
                (content, iso(now), rev, message_id),
            )
            edited = msgspec.structs.replace(message, content=content, edited_at=now, rev=rev)
            return Changed(message=edited, changed=True)

        return await self._db.write(work)

    async def edits(self, message_id: str) -> list[EditVersion]:
        """See `MessageStore.edits`."""

        def work(conn: sqlite3.Connection) -> list[EditVersion]:
            rows = conn.execute(
                "SELECT content, written_at FROM edits WHERE message_id = ? ORDER BY version",
                (message_id,),
            ).fetchall()
            return [
                EditVersion(content=r["content"], written_at=parse_iso(r["written_at"]))
                for r in rows
            ]

        return await self._db.read(work)

    async def delete_for_everyone(
        self, message_id: str, actor_id: str, *, is_admin: bool, now: datetime, rules: Rules
    ) -> Changed:
        """See `MessageStore.delete_for_everyone`."""

        def work(conn: sqlite3.Connection) -> Changed:
            message = _require_message(conn, message_id)
            if message.is_deleted:
                return Changed(message=message, changed=False)
            policy.check_delete(message, actor_id, is_admin=is_admin, now=now, rules=rules)
            rev = _next_rev(conn, message.chat_id)
            # The tombstone keeps its place (seq) and sender; content, media, reactions,
            # edit versions and the pin go (the content leaves the FTS index by trigger).
            conn.execute(
                "UPDATE messages SET content = NULL, media_url = NULL, deleted_at = ?,"
                " pinned_at = NULL, pinned_by = NULL, rev = ? WHERE id = ?",
                (iso(now), rev, message_id),
            )
            conn.execute("DELETE FROM reactions WHERE message_id = ?", (message_id,))
            conn.execute("DELETE FROM edits WHERE message_id = ?", (message_id,))
            tombstone = msgspec.structs.replace(
                message,
                content=None,
                media_url=None,
                deleted_at=now,
                pinned_at=None,
                pinned_by=None,
                rev=rev,
            )
            return Changed(
                message=tombstone, changed=True, was_pinned=message.pinned_at is not None
            )

        return await self._db.write(work)

    async def hide(self, message_id: str, user_id: str, *, now: datetime) -> Changed:
        """See `MessageStore.hide`."""

        def work(conn: sqlite3.Connection) -> Changed:
            message = _require_message(conn, message_id)
            found = conn.execute(
                "SELECT 1 FROM hidden WHERE user_id = ? AND message_id = ?",
                (user_id, message_id),
            ).fetchone()
            if found is not None:
                return Changed(message=message, changed=False)
            rev = _next_rev(conn, message.chat_id)
            conn.execute(
                "INSERT INTO hidden (user_id, message_id, chat_id, rev, hidden_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (user_id, message_id, message.chat_id, rev, iso(now)),
            )
            return Changed(message=message, changed=True)

        return await self._db.write(work)

    async def add_reaction(
        self, message_id: str, user_id: str, emoji: str, *, now: datetime, rules: Rules
    ) -> Changed:
        """See `MessageStore.add_reaction`."""

        def work(conn: sqlite3.Connection) -> Changed:
            message = _require_message(conn, message_id)
            policy.require_alive(message)
            existing = _reactions(conn, [message_id]).get(message_id, [])
            if ReactionRow(emoji, user_id) in existing:
                return Changed(message=message, changed=False, reactions=existing)
            policy.check_reaction_limits(existing, user_id, emoji, rules)
            conn.execute(
                "INSERT INTO reactions (message_id, user_id, emoji, created_at)"
                " VALUES (?, ?, ?, ?)",
                (message_id, user_id, emoji, iso(now)),
            )
            changed = _touch(conn, message)
            return Changed(
                message=changed, changed=True, reactions=[*existing, ReactionRow(emoji, user_id)]
            )

        return await self._db.write(work)

    async def remove_reaction(self, message_id: str, user_id: str, emoji: str) -> Changed:
        """See `MessageStore.remove_reaction`."""

        def work(conn: sqlite3.Connection) -> Changed:
            message = _require_message(conn, message_id)
            removed = conn.execute(
                "DELETE FROM reactions WHERE message_id = ? AND user_id = ? AND emoji = ?",
                (message_id, user_id, emoji),
            ).rowcount
            if removed:
                message = _touch(conn, message)
            reactions = _reactions(conn, [message_id]).get(message_id, [])
            return Changed(message=message, changed=bool(removed), reactions=reactions)

        return await self._db.write(work)

    async def set_pin(
        self, message_id: str, actor_id: str, *, pinned: bool, now: datetime, rules: Rules
    ) -> Changed:
        """See `MessageStore.set_pin`."""

        def work(conn: sqlite3.Connection) -> Changed:
            message = _require_message(conn, message_id)
            if (message.pinned_at is not None) == pinned:
                return Changed(message=message, changed=False)
            if pinned:
                policy.require_alive(message)
                (count,) = conn.execute(
                    "SELECT COUNT(*) FROM messages WHERE chat_id = ? AND pinned_at IS NOT NULL",
                    (message.chat_id,),
                ).fetchone()
                policy.check_pin_count(count, rules)
            rev = _next_rev(conn, message.chat_id)
            at, by = (now, actor_id) if pinned else (None, None)
            conn.execute(
                "UPDATE messages SET pinned_at = ?, pinned_by = ?, rev = ? WHERE id = ?",
                (_opt_iso(at), by, rev, message_id),
            )
            changed = msgspec.structs.replace(message, pinned_at=at, pinned_by=by, rev=rev)
            return Changed(message=changed, changed=True)

        return await self._db.write(work)

    async def pins(self, chat_id: str) -> Page:
        """See `MessageStore.pins`."""

        def work(conn: sqlite3.Connection) -> Page:
            rows = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages"
                " WHERE chat_id = ? AND pinned_at IS NOT NULL ORDER BY pinned_at DESC, seq DESC",
                (chat_id,),
            ).fetchall()
            return _page(conn, [_message(r) for r in rows])

        return await self._db.read(work)

    async def search(
        self,
        viewer_id: str,
        chat_ids: Sequence[str],
        words: Sequence[str],
        *,
        before: SearchCursor | None,
        limit: int,
    ) -> Page:
        """See `MessageStore.search` (FTS5 `MATCH`).

        Newest first is insertion order here: FTS5 walks its index by descending rowid
        (the messages' rowid) and stops once `limit` rows passed the filters, instead
        of sorting every match (a word in 20,000 messages: p50 21 ms sorted by time).
        The cursor's message names where the previous page ended.
        """
        match = policy.fts5_query(words)
        params: list[Any] = [match, _json_list(chat_ids), viewer_id]
        older = ""
        if before is not None:
            older = " AND f.rowid < (SELECT rowid FROM messages WHERE id = ?)"
            params.append(before.message_id)
        params.append(limit + 1)

        def work(conn: sqlite3.Connection) -> Page:
            index_pending(conn)
            rows = conn.execute(
                f"SELECT {_M_COLUMNS} FROM messages_fts f JOIN messages m ON m.rowid = f.rowid"
                " WHERE messages_fts MATCH ? AND m.chat_id IN (SELECT value FROM json_each(?))"
                f" AND m.deleted_at IS NULL AND {_NOT_HIDDEN}{older}"
                " ORDER BY f.rowid DESC LIMIT ?",
                params,
            ).fetchall()
            return _page(conn, [_message(r) for r in rows[:limit]], has_more=len(rows) > limit)

        # A write: it brings the index up to date first (pending rows: < INDEX_CHUNK).
        return await self._db.write(work)

    async def set_mute(self, user_id: str, chat_id: str, until: datetime | None) -> bool:
        """See `MessageStore.set_mute`."""
        stamp = _opt_iso(until)

        def work(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT muted_until FROM mutes WHERE user_id = ? AND chat_id = ?",
                (user_id, chat_id),
            ).fetchone()
            if row is not None and row[0] == stamp:
                return False
            conn.execute(
                "INSERT INTO mutes (user_id, chat_id, muted_until) VALUES (?, ?, ?)"
                " ON CONFLICT (user_id, chat_id) DO UPDATE SET muted_until = excluded.muted_until",
                (user_id, chat_id, stamp),
            )
            return True

        return await self._db.write(work)

    async def clear_mute(self, user_id: str, chat_id: str) -> bool:
        """See `MessageStore.clear_mute`."""

        def work(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "DELETE FROM mutes WHERE user_id = ? AND chat_id = ?", (user_id, chat_id)
            )
            return cursor.rowcount > 0

        return await self._db.write(work)


def _message_of(row: sqlite3.Row) -> StoredMessage:
    """A message from a row that has more columns than the message's."""
    fields = {k: row[k] for k in row.keys() if k not in ("h_at", "h_rev")}  # noqa: SIM118 - a Row iterates values
    return msgspec.convert(fields, StoredMessage)


def _next_rev(conn: sqlite3.Connection, chat_id: str) -> int:
    (rev,) = conn.execute(_NEXT_REV, (chat_id,)).fetchone()
    return int(rev)


def _touch(conn: sqlite3.Connection, message: StoredMessage) -> StoredMessage:
    """Give `message` its chat's next rev (a change that is not in the message row)."""
    rev = _next_rev(conn, message.chat_id)
    conn.execute("UPDATE messages SET rev = ? WHERE id = ?", (rev, message.id))
    return msgspec.structs.replace(message, rev=rev)


def _require_message(conn: sqlite3.Connection, message_id: str) -> StoredMessage:
    message = _get_message(conn, message_id)
    if message is None:
        raise DomainError(ErrorCode.NOT_FOUND, "message not found", field="messageId")
    return message


def _get_message(conn: sqlite3.Connection, message_id: str | None) -> StoredMessage | None:
    if message_id is None:
        return None
    row = conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,)
    ).fetchone()
    return _message(row) if row is not None else None


def _get_conversation(conn: sqlite3.Connection, chat_id: str) -> Conversation | None:
    if not domain.is_dm(chat_id):
        return None
    row = conn.execute(
        "SELECT id, user_a, user_b, created_at FROM conversations WHERE id = ?", (chat_id,)
    ).fetchone()
    return _conversation(row) if row is not None else None


def _find_dm(conn: sqlite3.Connection, target: PeerTarget) -> Conversation | None:
    row = conn.execute(
        "SELECT id, user_a, user_b, created_at FROM conversations WHERE user_a = ? AND user_b = ?",
        (target.user_a, target.user_b),
    ).fetchone()
    return _conversation(row) if row is not None else None


def _page(
    conn: sqlite3.Connection, messages: list[StoredMessage], *, has_more: bool = False
) -> Page:
    """A page with the originals its messages quote and their reactions."""
    return Page(
        messages=messages,
        replies=_replies(conn, messages),
        reactions=_reactions(conn, [m.id for m in messages]),
        has_more=has_more,
    )


def _replies(
    conn: sqlite3.Connection, messages: Iterable[StoredMessage]
) -> dict[str, StoredMessage]:
    ids = {m.reply_to_id for m in messages if m.reply_to_id is not None}
    if not ids:
        return {}
    rows = conn.execute(_MESSAGES_BY_IDS, (_json_list(ids),)).fetchall()
    return {r["id"]: _message(r) for r in rows}


def _reactions(
    conn: sqlite3.Connection, message_ids: Sequence[str]
) -> dict[str, list[ReactionRow]]:
    if not message_ids:
        return {}
    rows = conn.execute(
        "SELECT message_id, emoji, user_id FROM reactions"
        " WHERE message_id IN (SELECT value FROM json_each(?)) ORDER BY id",
        (_json_list(message_ids),),
    ).fetchall()
    found: dict[str, list[ReactionRow]] = {}
    for r in rows:
        found.setdefault(r["message_id"], []).append(ReactionRow(r["emoji"], r["user_id"]))
    return found


def _resolve_for_write(
    conn: sqlite3.Connection, target: Target, draft: MessageDraft, new_conversation_id: str
) -> tuple[str, Conversation | None, bool]:
    """(chat id, the DM if any, whether the DM was created now)."""
    if isinstance(target, GroupTarget):
        return target.group_id, None, False
    if isinstance(target, ConversationTarget):
        found = _get_conversation(conn, target.conversation_id)
        conversation = domain.require_participant(found, draft.sender_id)
        return conversation.id, conversation, False
    existing = _find_dm(conn, target)
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


def _resolve_for_read(conn: sqlite3.Connection, target: Target, user_id: str) -> str | None:
    """The chat id, None for a DM pair that has no conversation yet."""
    if isinstance(target, GroupTarget):
        return target.group_id
    if isinstance(target, ConversationTarget):
        found = _get_conversation(conn, target.conversation_id)
        return domain.require_participant(found, user_id).id
    existing = _find_dm(conn, target)
    return existing.id if existing is not None else None
