"""Where file bytes live: a port with a filesystem and a GridFS implementation.

Keys are made by the service (`u/<uploadId>`, `m/<mediaId>`, `t/<mediaId>`); no client
string ever becomes a key. Writes stream: a `Writer` takes one chunk at a time, so no
implementation holds a file in memory.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Protocol

#: What a key may look like (server-made ids only; checked by every implementation).
KEY = re.compile(r"[a-z]/[A-Za-z0-9_-]{1,128}")


class StorageError(Exception):
    """A write that does not fit the stored bytes (an offset past the end)."""


def check_key(key: str) -> str:
    """`key` if it is a server-made key; raises ValueError otherwise."""
    if not KEY.fullmatch(key):
        raise ValueError(f"not a storage key: {key!r}")
    return key


class Writer(Protocol):
    """Appends chunks to one stored object."""

    async def write(self, data: bytes) -> None:
        """Append `data`."""
        ...

    async def close(self) -> None:
        """Make what was written readable (also after a cut connection: resume keeps it)."""
        ...


class Storage(Protocol):
    """The storage port (see `tests/test_storage.py` for the contract both pass)."""

    async def open(self) -> None:
        """Connect / create directories (idempotent)."""
        ...

    async def close(self) -> None:
        """Release resources."""
        ...

    async def size(self, key: str) -> int:
        """Bytes stored under `key` (0 when nothing is)."""
        ...

    async def writer(self, key: str, offset: int) -> Writer:
        """A writer appending at `offset`: 0 starts over, the stored size resumes;
        anything else raises `StorageError`."""
        ...

    async def put(self, key: str, data: bytes) -> None:
        """Store a small object whole (thumbnails, re-encoded images)."""
        ...

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Bytes `start` to `end` (exclusive; None = to the end) in chunks."""
        ...

    async def delete(self, key: str) -> None:
        """Remove `key` (no error when absent)."""
        ...


#: Chunk size of reads (and of GridFS chunks): 256 KiB keeps the per-chunk overhead
#: (a thread hop, a socket write) under 1 % while memory per download stays small.
CHUNK = 256 * 1024
