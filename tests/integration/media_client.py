"""HTTP helpers for the media tests: a user's session on the media API, test files."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from multidict import CIMultiDict
from PIL import ExifTags, Image

from chat_testkit.stack import Stack

MIB = 1024 * 1024


def pdf_bytes(size: int) -> bytes:
    """A file the sniffer calls application/pdf, `size` bytes long."""
    head = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
    return head + (bytes(range(256)) * ((size - len(head)) // 256 + 1))[: size - len(head)]


def jpeg_with_gps() -> bytes:
    """A small JPEG whose EXIF carries a GPS position and a camera serial number."""
    image = Image.new("RGB", (640, 480), (200, 30, 30))
    exif = image.getexif()
    exif[ExifTags.Base.Make] = "TestCam"
    exif[ExifTags.Base.BodySerialNumber] = "SN-123456"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (52.0, 31.0, 12.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (13.0, 24.0, 36.0)
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    return out.getvalue()


async def chunks(data: bytes, size: int = MIB) -> AsyncIterator[bytes]:
    """`data` as a streamed (chunked) request body."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


class MediaUser:
    """One user's bearer-authenticated calls to the media service."""

    def __init__(self, stack: Stack, http: aiohttp.ClientSession, user_id: str) -> None:
        self.base = stack.media_url()
        self.user_id = user_id
        self.http = http
        self.auth = {"Authorization": f"Bearer {stack.token(user_id)}"}

    async def create(self, file_name: str, size: int) -> tuple[int, dict[str, Any]]:
        async with self.http.post(
            f"{self.base}/v1/uploads", json={"fileName": file_name, "size": size}, headers=self.auth
        ) as resp:
            return resp.status, await resp.json()

    async def put(
        self, url: str, body: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        async with self.http.put(url, data=body, headers={**self.auth, **(headers or {})}) as resp:
            return resp.status, await resp.json()

    async def upload(self, file_name: str, data: bytes) -> dict[str, Any]:
        """Create and send in one PUT; the final status (asserted complete)."""
        status, created = await self.create(file_name, len(data))
        assert status == 201, created
        status, done = await self.put(created["uploadUrl"], data)
        assert status == 200, done
        assert done["state"] == "complete", done
        return done

    async def head(self, url: str) -> tuple[int, Mapping[str, str]]:
        async with self.http.head(url, headers=self.auth) as resp:
            return resp.status, CIMultiDict(resp.headers)

    async def get(
        self, url: str, headers: dict[str, str] | None = None, auth: bool = True
    ) -> tuple[int, bytes, Mapping[str, str]]:
        sent = {**(self.auth if auth else {}), **(headers or {})}
        async with self.http.get(url, headers=sent) as resp:
            return resp.status, await resp.read(), CIMultiDict(resp.headers)
