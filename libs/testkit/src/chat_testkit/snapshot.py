"""A fingerprint of every SQLite store of a running stack, to prove a refused command
changed nothing.

Read through a read-only connection of its own (WAL readers do not block the workers'
writers). Each table is hashed row by row in rowid order; tables that change without a
client command (search index bookkeeping, profiles refreshed at connect, last-seen
times written when presence changes) are left out by name, and the snapshot says which.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

#: Tables written by background work, not by client commands (or derived from tables
#: that are compared): the FTS5 index and its state, and the users service's profile
#: and presence rows (written at every connect and disconnect of any socket).
VOLATILE = ("fts", "users", "last_seen", "presence", "profiles", "sqlite_")


def _volatile(table: str) -> bool:
    return any(part in table for part in VOLATILE)


def snapshot(data_dir: Path) -> dict[str, str]:
    """`{"<file>:<table>": sha256 of its rows}` for every compared table under `data_dir`."""
    out: dict[str, str] = {}
    for db in sorted(data_dir.glob("*.sqlite3")):
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            tables = [
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                if not _volatile(row[0])
            ]
            for table in tables:
                digest = hashlib.sha256()
                for row in conn.execute(f'SELECT * FROM "{table}"'):  # names from sqlite_master
                    digest.update(repr(row).encode())
                out[f"{db.name}:{table}"] = digest.hexdigest()
        finally:
            conn.close()
    return out


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """The tables whose rows differ (or that appeared or vanished)."""
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
