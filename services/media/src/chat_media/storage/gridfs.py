"""MongoDB GridFS (PyMongo's async API) for the MongoDB deployment.

GridFS files are immutable once closed, so an upload is stored as parts: each PUT (or
resumed chunk) is one GridFS file named by the key, its byte offset in `metadata`.
Reading concatenates the parts in offset order; starting over deletes them. A part is
visible once closed, which the upload path does also when the client's connection is
cut, so a resume continues after the last byte received.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from gridfs import AsyncGridFSBucket, AsyncGridIn

from chat_media.storage import CHUNK, StorageError, check_key
from chat_runtime.mongo import connect_mongo

BUCKET = "media"


class GridFsWriter:
    """One part being written."""

    def __init__(self, stream: AsyncGridIn) -> None:
        self._stream = stream

    async def write(self, data: bytes) -> None:
        await self._stream.write(data)

    async def close(self) -> None:
        await self._stream.close()


class GridFsStorage:
    """Objects as GridFS parts in the `media` bucket."""

    def __init__(self, url: str, db_name: str) -> None:
        self._client, db = connect_mongo(url, db_name)
        self._bucket = AsyncGridFSBucket(db, bucket_name=BUCKET, chunk_size_bytes=CHUNK)
        self._files = db[f"{BUCKET}.files"]

    async def open(self) -> None:
        await self._files.create_index([("filename", 1), ("metadata.offset", 1)])

    async def close(self) -> None:
        await self._client.close()

    async def _parts(self, key: str) -> list[dict[str, Any]]:
        cursor = self._files.find({"filename": check_key(key)}).sort("metadata.offset", 1)
        return [doc async for doc in cursor]

    async def size(self, key: str) -> int:
        return sum(int(doc["length"]) for doc in await self._parts(key))

    async def writer(self, key: str, offset: int) -> GridFsWriter:
        parts = await self._parts(key)
        size = sum(int(doc["length"]) for doc in parts)
        if offset not in (0, size):
            raise StorageError(f"{key} has {size} bytes, not {offset}")
        if offset == 0:
            for doc in parts:
                await self._bucket.delete(doc["_id"])
        stream = self._bucket.open_upload_stream(key, metadata={"offset": offset})
        return GridFsWriter(stream)

    async def put(self, key: str, data: bytes) -> None:
        await self.delete(key)
        await self._bucket.upload_from_stream(key, data, metadata={"offset": 0})

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        position = 0
        for doc in await self._parts(key):
            length = int(doc["length"])
            part_start, part_end = position, position + length
            position = part_end
            lo = max(start, part_start)
            hi = part_end if end is None else min(end, part_end)
            if lo >= hi:
                continue
            stream = await self._bucket.open_download_stream(doc["_id"])
            try:
                await stream.seek(lo - part_start)
                left = hi - lo
                while left > 0:
                    data = await stream.read(min(CHUNK, left))
                    if not data:
                        break
                    left -= len(data)
                    yield data
            finally:
                await stream.close()

    async def delete(self, key: str) -> None:
        for doc in await self._parts(key):
            await self._bucket.delete(doc["_id"])
