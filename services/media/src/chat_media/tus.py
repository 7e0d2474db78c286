"""tus 1.0 (core + creation) beside the PROTOCOL.md API, for clients with a tus library.

Same sessions, limits, checks and realtime events as `POST /v1/uploads` + `PUT`; only
the wire differs: `POST /v1/tus` with `Upload-Length` and `Upload-Metadata` (`filename`)
→ 201 `Location`; `HEAD` → `Upload-Offset`; `PATCH` with `Upload-Offset` and
`Content-Type: application/offset+octet-stream` → 204 with the new `Upload-Offset`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

import msgspec
from aiohttp import web

from chat_contracts import DomainError, ErrorCode
from chat_contracts.media import HttpError
from chat_media.uploads import Uploads
from chat_media.wire import ActorOf, request_body

VERSION = "1.0.0"
PREFIX = "/v1/tus"
OFFSET_TYPE = "application/offset+octet-stream"


def metadata(header: str | None) -> dict[str, str]:
    """`Upload-Metadata`: comma-separated `key base64value` pairs (value optional).

    A pair whose value is not base64 of UTF-8 is ignored (the name then falls back to
    `file`): metadata is informative, and the upload itself is sniffed anyway.
    """
    pairs: dict[str, str] = {}
    for item in (header or "").split(","):
        key, _, value = item.strip().partition(" ")
        if not key:
            continue
        try:
            pairs[key] = base64.b64decode(value, validate=True).decode() if value else ""
        except (binascii.Error, UnicodeDecodeError):
            continue
    return pairs


def _int_header(request: web.Request, name: str) -> int:
    raw = request.headers.get(name, "")
    if not raw.isdigit() or len(raw) > 15:
        raise DomainError(ErrorCode.VALIDATION_ERROR, f"{name} must be a number", field=name)
    return int(raw)


async def add_version(request: web.Request, response: web.StreamResponse) -> None:
    """Every tus response says which protocol it speaks."""
    if request.path.startswith(PREFIX):
        response.headers["Tus-Resumable"] = VERSION


def require_version(request: web.Request) -> None:
    """412 (with the version we speak) for a tus request of another version."""
    if request.headers.get("Tus-Resumable") != VERSION:
        body = HttpError(
            status="error",
            code=ErrorCode.VALIDATION_ERROR.value,
            error=f"Tus-Resumable must be {VERSION}",
            field="Tus-Resumable",
        )
        raise web.HTTPPreconditionFailed(
            body=msgspec.json.encode(body),
            content_type="application/json",
            headers={"Tus-Version": VERSION},
        )


class Tus:
    """The tus routes, on the same `Uploads` as the PROTOCOL.md API."""

    def __init__(
        self,
        uploads: Uploads,
        actor: ActorOf,
        upload_url: Callable[[str], str],
        max_bytes: int,
    ) -> None:
        self._uploads = uploads
        self._actor = actor
        self._url = upload_url
        self._max_bytes = max_bytes

    def add_routes(self, app: web.Application) -> None:
        """Register the tus routes on `app`."""
        app.router.add_route("OPTIONS", PREFIX, self.options)
        app.router.add_post(PREFIX, self.create)
        app.router.add_route("HEAD", PREFIX + "/{upload_id}", self.head)
        app.router.add_patch(PREFIX + "/{upload_id}", self.patch)

    async def options(self, request: web.Request) -> web.Response:
        """What this server speaks (no token needed)."""
        return web.Response(
            status=204,
            headers={
                "Tus-Version": VERSION,
                "Tus-Extension": "creation",
                "Tus-Max-Size": str(self._max_bytes),
            },
        )

    async def create(self, request: web.Request) -> web.Response:
        """`POST /v1/tus`: a session, as `POST /v1/uploads`."""
        require_version(request)
        actor = self._actor(request)
        size = _int_header(request, "Upload-Length")
        meta = metadata(request.headers.get("Upload-Metadata"))
        name = meta.get("filename") or meta.get("name") or "file"
        session = await self._uploads.create(actor, name, size)
        return web.Response(status=201, headers={"Location": self._url(session.upload_id)})

    async def head(self, request: web.Request) -> web.Response:
        """`HEAD`: the offset to resume at."""
        require_version(request)
        actor = self._actor(request)
        session = await self._uploads.owned(actor, request.match_info["upload_id"])
        stored = await self._uploads.stored_bytes(session)
        return web.Response(
            status=200,
            headers={
                "Upload-Offset": str(stored),
                "Upload-Length": str(session.size),
                "Cache-Control": "no-store",
            },
        )

    async def patch(self, request: web.Request) -> web.Response:
        """`PATCH`: bytes at exactly `Upload-Offset`."""
        require_version(request)
        actor = self._actor(request)
        if request.content_type != OFFSET_TYPE:
            raise DomainError(
                ErrorCode.VALIDATION_ERROR,
                f"Content-Type must be {OFFSET_TYPE}",
                field="Content-Type",
            )
        offset = _int_header(request, "Upload-Offset")
        result = await self._uploads.receive(
            actor,
            request.match_info["upload_id"],
            None,
            request.content_length,
            request_body(request),
            offset=offset,
        )
        return web.Response(status=204, headers={"Upload-Offset": str(result.session.received)})
