"""SQLite migrations: from an empty file, and from the schema before versioning with data."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chat_messages.domain import GroupTarget, MessageDraft
from chat_messages.rules import Rules
from chat_messages.store.sqlite import SqliteMessageStore
from chat_messages.store.sqlite_schema import MIGRATIONS, VERSION, migrate, version

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')")
        return {r[0] for r in rows}


async def test_an_empty_file_gets_every_step(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    store = SqliteMessageStore(path)
    await store.open()
    await store.close()
    with sqlite3.connect(path) as conn:
        assert version(conn) == VERSION == len(MIGRATIONS)
    assert {"messages", "chats", "edits", "reactions", "hidden", "mutes", "messages_fts"} <= (
        _tables(path)
    )
    # Opening again (a second worker, a restart) changes nothing.
    again = SqliteMessageStore(path)
    await again.open()
    await again.close()
    with sqlite3.connect(path) as conn:
        assert version(conn) == VERSION


def _version_0_file(path: Path) -> None:
    """A file as the code before versioning left it: step 1's tables, user_version 0,
    two messages in a group and one in a DM."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("INSERT INTO chats VALUES ('g_1', 2), ('c_1', 1)")
    conn.execute(
        "INSERT INTO conversations VALUES ('c_1', 'amy', 'bob', '2026-01-01T00:00:00.000Z')"
    )
    rows = [
        ("m_1", "g_1", 1, "amy", "Amy old lunch plans"),
        ("m_2", "g_1", 2, "bob", "Bob says hello"),
        ("m_3", "c_1", 1, "amy", "private lunch"),
    ]
    for mid, chat, seq, sender, content in rows:
        conn.execute(
            "INSERT INTO messages (id, chat_id, seq, sender_id, sender_name, client_message_id,"
            " type, content, created_at) VALUES (?, ?, ?, ?, ?, ?, 'TEXT', ?, ?)",
            (
                mid,
                chat,
                seq,
                sender,
                sender.title(),
                f"cm-{mid}",
                content,
                "2026-01-01T12:00:00.000Z",
            ),
        )
    conn.execute("COMMIT")
    conn.close()


async def test_a_version_0_file_with_data_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    _version_0_file(path)
    store = SqliteMessageStore(path)
    await store.open()
    try:
        with sqlite3.connect(path) as conn:
            assert version(conn) == VERSION
        # Every old message was one change: rev = seq, the chat's last rev = last seq.
        page = await store.history(GroupTarget(group_id="g_1"), "amy", before_seq=None, limit=10)
        assert [(m.seq, m.rev) for m in page.messages] == [(2, 2), (1, 1)]
        (counters,) = await store.chat_counters("cat", ["g_1"])
        assert (counters.last_seq, counters.last_rev) == (2, 2)
        # Old messages are searchable (the index was rebuilt) ...
        found = await store.search("amy", ["g_1", "c_1"], ["lunch"], before=None, limit=10)
        assert {m.id for m in found.messages} == {"m_1", "m_3"}
        # ... and new changes continue the numbering.
        edited = await store.edit("m_1", "amy", "new plans", now=T0, rules=Rules())
        assert edited.message.rev == 3
        draft = MessageDraft(
            id="m_4", sender_id="bob", sender_name="Bob", sender_avatar=None,
            client_message_id="cm-4", type="TEXT", content="x", media_url=None,
            reply_to_id=None, created_at=T0 + timedelta(seconds=1),
        )  # fmt: skip
        appended = await store.append(GroupTarget(group_id="g_1"), draft, new_conversation_id="c")
        assert (appended.message.seq, appended.message.rev) == (3, 4)
    finally:
        await store.close()


def test_a_file_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "new.sqlite3", isolation_level=None)
    conn.execute(f"PRAGMA user_version = {VERSION + 1}")
    with pytest.raises(RuntimeError, match="newer than this code"):
        migrate(conn)
    conn.close()


def test_steps_run_one_by_one_to_any_target(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "steps.sqlite3", isolation_level=None)
    for step in range(1, VERSION + 1):
        assert migrate(conn, step) == step - 1
        assert version(conn) == step
    conn.close()
