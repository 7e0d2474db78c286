"""The SQLite schema of the messages store as numbered migrations (`PRAGMA user_version`).

`migrate` runs, in one write transaction, every step above the file's `user_version`
and then sets it: an empty file goes through all steps, a file of an older version
only through the newer ones. Steps are append-only: a released step never changes,
a schema change is a new step. Step 1 is the schema that existed before versioning
(created with `IF NOT EXISTS`, so a file made by that code, still at version 0,
passes it unchanged).
"""

from __future__ import annotations

import sqlite3
from typing import Final

_V1: Final = (
    """CREATE TABLE IF NOT EXISTS conversations (
        id TEXT PRIMARY KEY,
        user_a TEXT NOT NULL,
        user_b TEXT NOT NULL,
        created_at TEXT NOT NULL,
        CHECK (user_a < user_b),
        UNIQUE (user_a, user_b)
    )""",
    "CREATE INDEX IF NOT EXISTS conversations_user_b ON conversations (user_b)",
    """CREATE TABLE IF NOT EXISTS chats (
        chat_id TEXT PRIMARY KEY,
        last_seq INTEGER NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS messages (
        id TEXT PRIMARY KEY,
        chat_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        sender_id TEXT NOT NULL,
        sender_name TEXT NOT NULL,
        sender_avatar TEXT,
        client_message_id TEXT NOT NULL,
        type TEXT NOT NULL,
        content TEXT,
        media_url TEXT,
        reply_to_id TEXT,
        created_at TEXT NOT NULL,
        edited_at TEXT,
        deleted_at TEXT,
        UNIQUE (chat_id, seq),
        UNIQUE (sender_id, client_message_id)
    )""",
    """CREATE TABLE IF NOT EXISTS reads (
        user_id TEXT NOT NULL,
        chat_id TEXT NOT NULL,
        last_read_seq INTEGER NOT NULL,
        PRIMARY KEY (user_id, chat_id)
    ) WITHOUT ROWID""",
)

# Change revisions and the message lifecycle. Existing data: every stored message was
# one change (its creation), so a message's rev is its seq and a chat's last rev its
# last seq; clients that synced by seq hold exactly that.
_V2: Final = (
    "ALTER TABLE chats ADD COLUMN last_rev INTEGER NOT NULL DEFAULT 0",
    "UPDATE chats SET last_rev = last_seq",
    "ALTER TABLE messages ADD COLUMN rev INTEGER NOT NULL DEFAULT 0",
    "UPDATE messages SET rev = seq",
    "ALTER TABLE messages ADD COLUMN pinned_at TEXT",
    "ALTER TABLE messages ADD COLUMN pinned_by TEXT",
    "ALTER TABLE messages ADD COLUMN fwd_message_id TEXT",
    "ALTER TABLE messages ADD COLUMN fwd_sender_id TEXT",
    "ALTER TABLE messages ADD COLUMN fwd_sender_name TEXT",
    "CREATE INDEX messages_chat_rev ON messages (chat_id, rev)",
    "CREATE INDEX messages_pinned ON messages (chat_id, pinned_at) WHERE pinned_at IS NOT NULL",
    """CREATE TABLE edits (
        message_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        content TEXT NOT NULL,
        written_at TEXT NOT NULL,
        PRIMARY KEY (message_id, version)
    ) WITHOUT ROWID""",
    # The rowid orders reactions by arrival (first users listed first).
    """CREATE TABLE reactions (
        id INTEGER PRIMARY KEY,
        message_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        emoji TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (message_id, user_id, emoji)
    )""",
    """CREATE TABLE hidden (
        user_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        chat_id TEXT NOT NULL,
        rev INTEGER NOT NULL,
        hidden_at TEXT NOT NULL,
        PRIMARY KEY (user_id, message_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX hidden_user_chat_rev ON hidden (user_id, chat_id, rev)",
    """CREATE TABLE mutes (
        user_id TEXT NOT NULL,
        chat_id TEXT NOT NULL,
        muted_until TEXT,
        PRIMARY KEY (user_id, chat_id)
    ) WITHOUT ROWID""",
)

# Full-text search: an FTS5 index over `messages.content` (external content, so the
# text is stored once). `unicode61` folds case and, with `remove_diacritics 2`, accents
# ("café" matches "cafe"). New messages are indexed in bulk, not one by one: a trigger
# per insert doubled the cost of `append` (one FTS segment written per commit; 127 µs
# per message measured), while indexing 256 rows in one statement costs 4 µs a row.
# `fts_state.indexed_upto` is the highest messages rowid in the index; the store indexes
# the rows above it every `INDEX_CHUNK` appends and before every search, so a search
# always sees every message. Edits and deletes of indexed rows are kept in step by the
# triggers (a tombstone's content is NULL and so leaves the index); rows not indexed yet
# are indexed later with their content of that time. Messages are never deleted, so
# rowids only grow.
_V3: Final = (
    """CREATE VIRTUAL TABLE messages_fts USING fts5(
        content, content='messages', content_rowid='rowid',
        tokenize='unicode61 remove_diacritics 2'
    )""",
    "INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')",
    """CREATE TABLE fts_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        indexed_upto INTEGER NOT NULL
    )""",
    "INSERT INTO fts_state (id, indexed_upto) SELECT 1, COALESCE(MAX(rowid), 0) FROM messages",
    """CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
    WHEN old.content IS NOT NULL
     AND old.rowid <= (SELECT indexed_upto FROM fts_state WHERE id = 1) BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, content)
        VALUES ('delete', old.rowid, old.content);
    END""",
    """CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages
    WHEN old.rowid <= (SELECT indexed_upto FROM fts_state WHERE id = 1) BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, content)
        SELECT 'delete', old.rowid, old.content WHERE old.content IS NOT NULL;
        INSERT INTO messages_fts (rowid, content)
        SELECT new.rowid, new.content WHERE new.content IS NOT NULL;
    END""",
)

#: Step n (1-based) is MIGRATIONS[n - 1].
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (_V1, _V2, _V3)
VERSION: Final = len(MIGRATIONS)


def version(conn: sqlite3.Connection) -> int:
    """The file's schema version."""
    (current,) = conn.execute("PRAGMA user_version").fetchone()
    return int(current)


def migrate(conn: sqlite3.Connection, target: int = VERSION) -> int:
    """Run the steps above the file's version up to `target` (inside the caller's
    transaction, so concurrent openers serialize on the write lock); the old version."""
    current = version(conn)
    if current > VERSION:
        raise RuntimeError(
            f"messages database is at schema version {current}, newer than this code ({VERSION})"
        )
    for step in range(current, target):
        for statement in MIGRATIONS[step]:
            conn.execute(statement)
    if target > current:
        # PRAGMA takes no bound parameters; `target` is an int from this module.
        conn.execute(f"PRAGMA user_version = {int(target)}")
    return current
