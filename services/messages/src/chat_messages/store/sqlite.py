"""`MessageStore` on one SQLite file (several worker processes may share it).

Each command is one `read` or `write` call of `SqliteDatabase`. A write's checks, its
change and the chat's next `rev` share one `BEGIN IMMEDIATE` transaction: the write
lock serializes writers across processes, so seqs and revs have no gaps, idempotency
has no race, and reaction aggregates are exact however many users react at once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from chat_messages import domain
from chat_messages import rules as policy
from chat_messages.domain import (
    ChatCounters,
    HiddenMessage,
    MessageDraft,
    Page,
    ReactionRow,
    Target,
)
from chat_messages.rules import Rules, SearchCursor
from chat_messages.store import Appended, Changed, Changes, EditVersion, ReadLookup
from chat_messages.store import sqlite_rows as q
from chat_messages.store.sqlite_schema import migrate
from chat_runtime.clock import iso, parse_iso
from chat_runtime.sqlite import SqliteDatabase


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
                f"SELECT {q.MESSAGE_COLUMNS} FROM messages"
                " WHERE sender_id = ? AND client_message_id = ?",
                (draft.sender_id, draft.client_message_id),
            ).fetchone()
            if row is not None:
                first = q.message(row)
                return Appended(
                    message=first,
                    reply_to=q.get_message(conn, first.reply_to_id),
                    duplicate=True,
                    conversation=q.get_conversation(conn, first.chat_id),
                )
            chat_id, conversation, created = q.resolve_for_write(
                conn, target, draft, new_conversation_id
            )
            reply_to = None
            if draft.reply_to_id is not None:
                original = q.get_message(conn, draft.reply_to_id)
                reply_to = domain.require_reply_target(original, chat_id)
            seq, rev = conn.execute(q.NEXT_SEQ, (chat_id,)).fetchone()
            message = draft.stored(chat_id, seq, rev)
            inserted = conn.execute(
                f"INSERT INTO messages ({q.MESSAGE_COLUMNS}) VALUES ({', '.join('?' * 20)})",
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
            conn.execute(q.RAISE_WATERMARK, (draft.sender_id, chat_id, seq))
            if (inserted.lastrowid or 0) % q.INDEX_CHUNK == 0:
                q.index_pending(conn)
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
            chat_id = q.resolve_for_read(conn, target, user_id)
            if chat_id is None:
                return Page(messages=[])
            # One row past `limit` tells whether an older page exists.
            rows = conn.execute(
                f"SELECT {q.M_COLUMNS} FROM messages m WHERE m.chat_id = ? AND m.seq < ?"
                f" AND {q.NOT_HIDDEN} ORDER BY m.seq DESC LIMIT ?",
                (chat_id, before_seq if before_seq is not None else 2**63 - 1, user_id, limit + 1),
            ).fetchall()
            return q.page(conn, [q.message(r) for r in rows[:limit]], has_more=len(rows) > limit)

        return await self._db.read(work)

    async def chat_of(self, target: Target, user_id: str) -> str | None:
        """See `MessageStore.chat_of`."""
        return await self._db.read(lambda conn: q.resolve_for_read(conn, target, user_id))

    async def chat_counters(self, user_id: str, group_ids: Sequence[str]) -> list[ChatCounters]:
        """See `MessageStore.chat_counters`."""

        def work(conn: sqlite3.Connection) -> list[ChatCounters]:
            rows = conn.execute(
                q.CHAT_COUNTERS, {"user": user_id, "groups": q.json_list(group_ids)}
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
                f"SELECT {q.M_COLUMNS} FROM messages m"
                f" WHERE m.chat_id = ? AND m.seq > ? AND m.seq <= ? AND {q.NOT_HIDDEN}"
                " ORDER BY m.seq LIMIT ?",
                (chat_id, after_seq, through_seq, viewer_id, limit),
            ).fetchall()
            return q.page(conn, [q.message(r) for r in rows])

        return await self._db.read(work)

    async def changed_since(
        self, chat_id: str, viewer_id: str, *, after_rev: int, through_seq: int, limit: int
    ) -> Changes:
        """See `MessageStore.changed_since`."""

        def work(conn: sqlite3.Connection) -> Changes:
            rows = conn.execute(
                f"SELECT {q.M_COLUMNS} FROM messages m"
                f" WHERE m.chat_id = ? AND m.rev > ? AND m.seq <= ? AND {q.NOT_HIDDEN}"
                " ORDER BY m.rev LIMIT ?",
                (chat_id, after_rev, through_seq, viewer_id, limit + 1),
            ).fetchall()
            hidden_rows = conn.execute(
                f"SELECT {q.M_COLUMNS}, h.hidden_at AS h_at, h.rev AS h_rev"
                " FROM hidden h JOIN messages m ON m.id = h.message_id"
                " WHERE h.user_id = ? AND h.chat_id = ? AND h.rev > ? AND m.seq <= ?"
                " ORDER BY h.rev LIMIT ?",
                (viewer_id, chat_id, after_rev, through_seq, limit),
            ).fetchall()
            hidden = [
                HiddenMessage(
                    message=q.message_of(r), hidden_at=parse_iso(r["h_at"]), rev=r["h_rev"]
                )
                for r in hidden_rows
            ]
            page = q.page(conn, [q.message(r) for r in rows[:limit]])
            return Changes(page=page, hidden=hidden, limited=len(rows) > limit)

        return await self._db.read(work)

    async def page_of(self, message_ids: Sequence[str]) -> Page:
        """See `MessageStore.page_of`."""

        def work(conn: sqlite3.Connection) -> Page:
            rows = conn.execute(q.MESSAGES_BY_IDS, (q.json_list(message_ids),)).fetchall()
            found = {r["id"]: q.message(r) for r in rows}
            return q.page(conn, [found[i] for i in message_ids if i in found])

        return await self._db.read(work)

    async def lookup_for_read(self, message_ids: Sequence[str]) -> ReadLookup:
        """See `MessageStore.lookup_for_read`."""

        def work(conn: sqlite3.Connection) -> ReadLookup:
            rows = conn.execute(q.MESSAGES_BY_IDS, (q.json_list(message_ids),)).fetchall()
            found = {r["id"]: q.message(r) for r in rows}
            messages = [found[i] for i in message_ids if i in found]
            dm_ids = {m.chat_id for m in messages if domain.is_dm(m.chat_id)}
            conversations = conn.execute(
                "SELECT id, user_a, user_b, created_at FROM conversations"
                " WHERE id IN (SELECT value FROM json_each(?))",
                (q.json_list(dm_ids),),
            ).fetchall()
            return ReadLookup(
                messages=messages,
                conversations={r["id"]: q.conversation(r) for r in conversations},
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
                conn.execute(q.RAISE_WATERMARK, (user_id, chat_id, seq))
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
            message = q.require_message(conn, message_id)
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
            rev = q.next_rev(conn, message.chat_id)
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
            message = q.require_message(conn, message_id)
            if message.is_deleted:
                return Changed(message=message, changed=False)
            policy.check_delete(message, actor_id, is_admin=is_admin, now=now, rules=rules)
            rev = q.next_rev(conn, message.chat_id)
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
            message = q.require_message(conn, message_id)
            found = conn.execute(
                "SELECT 1 FROM hidden WHERE user_id = ? AND message_id = ?",
                (user_id, message_id),
            ).fetchone()
            if found is not None:
                return Changed(message=message, changed=False)
            rev = q.next_rev(conn, message.chat_id)
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
            message = q.require_message(conn, message_id)
            policy.require_alive(message)
            existing = q.reactions(conn, [message_id]).get(message_id, [])
            if ReactionRow(emoji, user_id) in existing:
                return Changed(message=message, changed=False, reactions=existing)
            policy.check_reaction_limits(existing, user_id, emoji, rules)
            conn.execute(
                "INSERT INTO reactions (message_id, user_id, emoji, created_at)"
                " VALUES (?, ?, ?, ?)",
                (message_id, user_id, emoji, iso(now)),
            )
            changed = q.touch(conn, message)
            return Changed(
                message=changed, changed=True, reactions=[*existing, ReactionRow(emoji, user_id)]
            )

        return await self._db.write(work)

    async def remove_reaction(self, message_id: str, user_id: str, emoji: str) -> Changed:
        """See `MessageStore.remove_reaction`."""

        def work(conn: sqlite3.Connection) -> Changed:
            message = q.require_message(conn, message_id)
            removed = conn.execute(
                "DELETE FROM reactions WHERE message_id = ? AND user_id = ? AND emoji = ?",
                (message_id, user_id, emoji),
            ).rowcount
            if removed:
                message = q.touch(conn, message)
            reactions = q.reactions(conn, [message_id]).get(message_id, [])
            return Changed(message=message, changed=bool(removed), reactions=reactions)

        return await self._db.write(work)

    async def set_pin(
        self, message_id: str, actor_id: str, *, pinned: bool, now: datetime, rules: Rules
    ) -> Changed:
        """See `MessageStore.set_pin`."""

        def work(conn: sqlite3.Connection) -> Changed:
            message = q.require_message(conn, message_id)
            if (message.pinned_at is not None) == pinned:
                return Changed(message=message, changed=False)
            if pinned:
                policy.require_alive(message)
                (count,) = conn.execute(
                    "SELECT COUNT(*) FROM messages WHERE chat_id = ? AND pinned_at IS NOT NULL",
                    (message.chat_id,),
                ).fetchone()
                policy.check_pin_count(count, rules)
            rev = q.next_rev(conn, message.chat_id)
            at, by = (now, actor_id) if pinned else (None, None)
            conn.execute(
                "UPDATE messages SET pinned_at = ?, pinned_by = ?, rev = ? WHERE id = ?",
                (q.opt_iso(at), by, rev, message_id),
            )
            changed = msgspec.structs.replace(message, pinned_at=at, pinned_by=by, rev=rev)
            return Changed(message=changed, changed=True)

        return await self._db.write(work)

    async def pins(self, chat_id: str) -> Page:
        """See `MessageStore.pins`."""

        def work(conn: sqlite3.Connection) -> Page:
            rows = conn.execute(
                f"SELECT {q.MESSAGE_COLUMNS} FROM messages"
                " WHERE chat_id = ? AND pinned_at IS NOT NULL ORDER BY pinned_at DESC, seq DESC",
                (chat_id,),
            ).fetchall()
            return q.page(conn, [q.message(r) for r in rows])

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
        params: list[Any] = [match, q.json_list(chat_ids), viewer_id]
        older = ""
        if before is not None:
            older = " AND f.rowid < (SELECT rowid FROM messages WHERE id = ?)"
            params.append(before.message_id)
        params.append(limit + 1)

        def work(conn: sqlite3.Connection) -> Page:
            q.index_pending(conn)
            rows = conn.execute(
                f"SELECT {q.M_COLUMNS} FROM messages_fts f JOIN messages m ON m.rowid = f.rowid"
                " WHERE messages_fts MATCH ? AND m.chat_id IN (SELECT value FROM json_each(?))"
                f" AND m.deleted_at IS NULL AND {q.NOT_HIDDEN}{older}"
                " ORDER BY f.rowid DESC LIMIT ?",
                params,
            ).fetchall()
            return q.page(conn, [q.message(r) for r in rows[:limit]], has_more=len(rows) > limit)

        # A write: it brings the index up to date first (pending rows: < q.INDEX_CHUNK).
        return await self._db.write(work)

    async def set_mute(self, user_id: str, chat_id: str, until: datetime | None) -> bool:
        """See `MessageStore.set_mute`."""
        stamp = q.opt_iso(until)

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

    async def muted_among(self, chat_id: str, user_ids: Sequence[str], now: datetime) -> list[str]:
        """See `MessageStore.muted_among` (one query over the `(user_id, chat_id)` key)."""
        ids = q.json_list(dict.fromkeys(user_ids))

        def work(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT user_id FROM mutes WHERE chat_id = ?"
                " AND user_id IN (SELECT value FROM json_each(?))"
                " AND (muted_until IS NULL OR muted_until > ?)",
                (chat_id, ids, q.opt_iso(now)),
            ).fetchall()
            return sorted(row[0] for row in rows)

        return await self._db.read(work)

    async def clear_mute(self, user_id: str, chat_id: str) -> bool:
        """See `MessageStore.clear_mute`."""

        def work(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "DELETE FROM mutes WHERE user_id = ? AND chat_id = ?", (user_id, chat_id)
            )
            return cursor.rowcount > 0

        return await self._db.write(work)
