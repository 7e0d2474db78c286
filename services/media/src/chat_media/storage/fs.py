"""Files under `CHAT_MEDIA_DIR`, every system call off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import BinaryIO

from chat_media.storage import CHUNK, StorageError, check_key


class FsWriter:
    """Appends to one open file; each write is one hop to the default thread pool."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle

    async def write(self, data: bytes) -> None:
        await asyncio.to_thread(self._handle.write, data)

    async def close(self) -> None:
        await asyncio.to_thread(self._handle.close)


class FsStorage:
    """Objects as files: key `m/md_...` is `<root>/m/md_...`."""

    def __init__(self, root: str | Path) -> None:
        self._root = Path(root)

    def _path(self, key: str) -> Path:
        return self._root / check_key(key)

    async def open(self) -> None:
        await asyncio.to_thread(self._root.mkdir, parents=True, exist_ok=True)

    async def close(self) -> None:
        """Nothing held open."""

    async def size(self, key: str) -> int:
        try:
            return (await asyncio.to_thread(self._path(key).stat)).st_size
        except FileNotFoundError:
            return 0

    async def writer(self, key: str, offset: int) -> FsWriter:
        path = self._path(key)

        def open_at() -> BinaryIO:
            path.parent.mkdir(parents=True, exist_ok=True)
            size = path.stat().st_size if path.exists() else 0
            if offset not in (0, size):
                raise StorageError(f"{key} has {size} bytes, not {offset}")
            handle = path.open("r+b" if size else "wb")
            handle.truncate(offset)
            handle.seek(offset)
            return handle

        return FsWriter(await asyncio.to_thread(open_at))

    async def put(self, key: str, data: bytes) -> None:
        path = self._path(key)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)

        await asyncio.to_thread(write)

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        path = self._path(key)
        handle = await asyncio.to_thread(path.open, "rb")
        try:
            await asyncio.to_thread(handle.seek, start)
            left = None if end is None else end - start
            while left is None or left > 0:
                size = CHUNK if left is None else min(CHUNK, left)
                data = await asyncio.to_thread(partial(handle.read, size))
                if not data:
                    return
                if left is not None:
                    left -= len(data)
                yield data
        finally:
            await asyncio.to_thread(handle.close)

    async def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(self._path(key).unlink)
