"""The storage contract: the filesystem and GridFS implementations pass the same tests."""

from __future__ import annotations

import pytest

from chat_media.storage import CHUNK, Storage, StorageError


async def _read(storage: Storage, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in storage.read(key, start, end)])


async def _append(storage: Storage, key: str, offset: int, *parts: bytes) -> None:
    writer = await storage.writer(key, offset)
    for part in parts:
        await writer.write(part)
    await writer.close()


async def test_streams_in_and_out_across_chunks(storage: Storage) -> None:
    data = bytes(range(256)) * (3 * CHUNK // 256 + 7)
    await _append(storage, "u/up_1", 0, data[:1000], data[1000 : 2 * CHUNK], data[2 * CHUNK :])
    assert await storage.size("u/up_1") == len(data)
    assert await _read(storage, "u/up_1") == data
    assert await _read(storage, "u/up_1", 10, 20) == data[10:20]
    assert await _read(storage, "u/up_1", CHUNK - 5, CHUNK + 5) == data[CHUNK - 5 : CHUNK + 5]
    assert await _read(storage, "u/up_1", len(data) - 3) == data[-3:]


async def test_resume_appends_and_zero_starts_over(storage: Storage) -> None:
    await _append(storage, "u/up_2", 0, b"hello ")
    await _append(storage, "u/up_2", 6, b"world")
    assert await _read(storage, "u/up_2") == b"hello world"
    assert await _read(storage, "u/up_2", 4, 8) == b"o wo"
    with pytest.raises(StorageError):
        await storage.writer("u/up_2", 3)
    with pytest.raises(StorageError):
        await storage.writer("u/up_2", 12)
    await _append(storage, "u/up_2", 0, b"again")
    assert await _read(storage, "u/up_2") == b"again"


async def test_a_cut_write_keeps_what_was_written(storage: Storage) -> None:
    writer = await storage.writer("u/up_3", 0)
    await writer.write(b"x" * 5000)
    await writer.close()  # what the upload path does when the client goes away
    assert await storage.size("u/up_3") == 5000


async def test_put_replaces_and_delete_removes(storage: Storage) -> None:
    await storage.put("t/md_1", b"thumb-1")
    await storage.put("t/md_1", b"thumb-2")
    assert await _read(storage, "t/md_1") == b"thumb-2"
    await storage.delete("t/md_1")
    assert await storage.size("t/md_1") == 0
    await storage.delete("t/md_1")  # absent: no error
    assert await storage.size("m/never") == 0


@pytest.mark.parametrize("key", ["../etc/passwd", "u/../../x", "/abs", "u/a b", "U/x", "u/"])
async def test_only_server_made_keys(storage: Storage, key: str) -> None:
    with pytest.raises(ValueError, match="not a storage key"):
        await storage.size(key)
    with pytest.raises(ValueError, match="not a storage key"):
        await storage.put(key, b"x")
