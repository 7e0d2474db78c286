"""The media HTTP API on aiohttp: uploads, resumable PUTs, authorised downloads.

Thin: authenticate, decode, call `Uploads` / `Access`, encode. Refusals are
`DomainError`s mapped to statuses here, with the ack's error fields as the JSON body.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec
from aiohttp import web

from chat_contracts import DomainError, ErrorCode, RetryableError
from chat_contracts.bus import Actor
from chat_contracts.ids import is_valid_id
from chat_contracts.media import HttpError, MediaLink, UploadCreated, UploadRequest, UploadStatus
from chat_media import domain, metrics, tus
from chat_media.access import Access
from chat_media.domain import Kind, Media, UploadSession
from chat_media.openapi import document
from chat_media.storage import Storage
from chat_media.uploads import Received, Uploads
from chat_media.wire import Handler, request_body
from chat_runtime.auth import TokenVerifier, Unauthorized
from chat_runtime.clock import Clock, iso

log = logging.getLogger(__name__)

STATUS: dict[ErrorCode, int] = {
    ErrorCode.VALIDATION_ERROR: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.LIMIT_EXCEEDED: 429,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.INTERNAL: 500,
}
#: Headers every download carries: never sniffed into HTML, never scripted, never
#: kept by a shared cache (the content is per reader).
SAFE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, max-age=3600",
    "Accept-Ranges": "bytes",
}
_RANGE = re.compile(r"bytes=(\d{0,15})-(\d{0,15})")
_json = msgspec.json.Encoder()


def _decode_upload_request(body: bytes) -> UploadRequest:
    """JSON has one number type: `1e3` and `1000.0` are the integer 1000 (JSON Schema
    agrees), so integral floats are accepted where an integer is expected."""
    raw = msgspec.json.decode(body)
    if isinstance(raw, dict):
        for key, value in raw.items():
            if isinstance(value, float) and value.is_integer():
                raw[key] = int(value)
    return msgspec.convert(raw, UploadRequest)


class Urls:
    """The URLs handed to clients, from the public base (known once the port is bound)."""

    def __init__(self, base: str = "") -> None:
        self.base = base.rstrip("/")

    def upload(self, upload_id: str) -> str:
        return f"{self.base}/v1/uploads/{upload_id}"

    def tus(self, upload_id: str) -> str:
        return f"{self.base}{tus.PREFIX}/{upload_id}"

    def media(self, media_id: str) -> str:
        return f"{self.base}/v1/media/{media_id}"

    def thumbnail(self, media_id: str) -> str:
        return f"{self.base}/v1/media/{media_id}/thumbnail"

    def media_id_of(self, url: str) -> str | None:
        """The id in a URL this service issued, or None."""
        prefix = f"{self.base}/v1/media/"
        if not url.startswith(prefix):
            return None
        rest = url[len(prefix) :]
        return rest if is_valid_id(rest) else None


def _error(exc: DomainError) -> web.Response:
    status = STATUS.get(exc.code, 400)
    if exc.code is ErrorCode.VALIDATION_ERROR and exc.field == "file":
        status = 415  # the sniffed type is not on the allow-list
    body = HttpError(status="error", code=exc.code.value, error=exc.message, field=exc.field)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return web.Response(
        status=status, body=_json.encode(body), content_type="application/json", headers=headers
    )


def _ok(value: msgspec.Struct, status: int = 200) -> web.Response:
    return web.Response(status=status, body=_json.encode(value), content_type="application/json")


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Domain refusals become JSON errors; nothing escapes as a traceback."""
    try:
        return await handler(request)
    except DomainError as exc:
        return _error(exc)
    except msgspec.ValidationError as exc:
        text = str(exc)
        field = text.rsplit("at `$.", 1)[1].rstrip("`") if "at `$." in text else None
        return _error(DomainError(ErrorCode.VALIDATION_ERROR, text, field=field))
    except msgspec.DecodeError as exc:
        return _error(DomainError(ErrorCode.VALIDATION_ERROR, f"malformed JSON: {exc}"))
    except RetryableError as exc:
        body = HttpError(
            status="retry", code=exc.code.value, error=exc.message, retry_after=exc.retry_after_ms
        )
        headers = {"Retry-After": str(max(1, exc.retry_after_ms // 1000))}
        return web.Response(
            status=503, body=_json.encode(body), content_type="application/json", headers=headers
        )
    except web.HTTPException:
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        body = HttpError(status="error", code=ErrorCode.INTERNAL.value, error="internal error")
        return web.Response(status=500, body=_json.encode(body), content_type="application/json")


class MediaApi:
    """Route handlers bound to the service's collaborators."""

    def __init__(
        self,
        *,
        uploads: Uploads,
        access: Access,
        storage: Storage,
        verifier: TokenVerifier,
        urls: Urls,
        clock: Clock,
        signing_key: bytes,
        link_ttl_s: int,
        max_bytes: int,
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self._max_bytes = max_bytes
        self._ready = ready
        self._uploads = uploads
        self._access = access
        self._storage = storage
        self._verifier = verifier
        self._urls = urls
        self._clock = clock
        self._key = signing_key
        self._link_ttl = link_ttl_s

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(middlewares=[metrics.measured, errors])
        app.on_response_prepare.append(tus.add_version)
        tus.Tus(self._uploads, self.actor, self._urls.tus, self._max_bytes).add_routes(app)
        app.router.add_get("/healthz", self.health)
        app.router.add_get("/readyz", self.readiness)
        app.router.add_get("/v1/openapi.json", self.openapi)
        app.router.add_post("/v1/uploads", self.create)
        app.router.add_put("/v1/uploads/{upload_id}", self.put)
        app.router.add_route("HEAD", "/v1/uploads/{upload_id}", self.head)
        app.router.add_get("/v1/media/{media_id}", self.download)  # GET and HEAD
        app.router.add_get("/v1/media/{media_id}/thumbnail", self.thumbnail)
        app.router.add_get("/v1/media/{media_id}/link", self.link)
        return app

    # --- plumbing -----------------------------------------------------------------

    def actor(self, request: web.Request) -> Actor:
        """The bearer token's user, or UNAUTHORIZED."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise DomainError(ErrorCode.UNAUTHORIZED, "a bearer token is required")
        try:
            return self._verifier.verify(token.strip())
        except Unauthorized as exc:
            raise DomainError(ErrorCode.UNAUTHORIZED, f"bad token: {exc}") from None

    def _reader(self, request: web.Request, media_id: str) -> str:
        """The user a download is for: from the bearer token, or a signed link."""
        query = request.query
        if "sig" not in query:
            return self.actor(request).user_id
        try:
            expires = int(query.get("exp", ""))
        except ValueError:
            raise DomainError(ErrorCode.UNAUTHORIZED, "bad link expiry", field="exp") from None
        user_id = query.get("u", "")
        now = int(self._clock.now().timestamp())
        if not user_id or not domain.verify_link(
            self._key, media_id, user_id, expires, query["sig"], now
        ):
            raise DomainError(ErrorCode.UNAUTHORIZED, "link is invalid or expired", field="sig")
        return user_id

    @staticmethod
    def _id(request: web.Request, name: str) -> str:
        value = request.match_info[name]
        if not is_valid_id(value):
            raise DomainError(ErrorCode.NOT_FOUND, f"no such {name}", field=name)
        return value

    def _status(self, session: UploadSession, media: Media | None = None) -> UploadStatus:
        return UploadStatus(
            upload_id=session.upload_id,
            file_name=session.file_name,
            size=session.size,
            bytes_received=session.received,
            state=session.state.value,
            media_url=None if media is None else self._urls.media(media.media_id),
            mime_type=None if media is None else media.mime,
            width=None if media is None else media.width,
            height=None if media is None else media.height,
            thumbnail_url=(
                None
                if media is None or media.thumb_key is None
                else self._urls.thumbnail(media.media_id)
            ),
        )

    # --- routes -------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        """Liveness: the process answers."""
        return web.json_response({"status": "ok"})

    async def readiness(self, request: web.Request) -> web.Response:
        """Readiness: 200 only while connected to NATS (progress events and claims)."""
        if not self._ready():
            return web.json_response({"status": "unavailable"}, status=503)
        return web.json_response({"status": "ok"})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(
            body=_json.encode(document(self._max_bytes)), content_type="application/json"
        )

    async def create(self, request: web.Request) -> web.Response:
        """`POST /v1/uploads` → 201 `{uploadId, uploadUrl}`."""
        actor = self.actor(request)
        body = _decode_upload_request(await request.content.read(8_192))
        session = await self._uploads.create(actor, body.file_name, body.size)
        created = UploadCreated(
            upload_id=session.upload_id, upload_url=self._urls.upload(session.upload_id)
        )
        return _ok(created, status=201)

    async def put(self, request: web.Request) -> web.Response:
        """`PUT uploadUrl`: the body streams to storage; 200 with the status (complete or
        not: a `Content-Range` chunk short of the end leaves it open)."""
        actor = self.actor(request)
        upload_id = self._id(request, "upload_id")
        result: Received = await self._uploads.receive(
            actor,
            upload_id,
            request.headers.get("Content-Range"),
            request.content_length,
            request_body(request),
        )
        return _ok(self._status(result.session, result.media))

    async def head(self, request: web.Request) -> web.Response:
        """`HEAD uploadUrl`: `Upload-Offset` = bytes stored, `Upload-Length` = size."""
        actor = self.actor(request)
        session = await self._uploads.owned(actor, self._id(request, "upload_id"))
        stored = await self._uploads.stored_bytes(session)
        return web.Response(
            status=200,
            headers={
                "Upload-Offset": str(stored),
                "Upload-Length": str(session.size),
                "Upload-State": session.state.value,
                "Cache-Control": "no-store",
            },
        )

    async def link(self, request: web.Request) -> web.Response:
        """`GET /v1/media/{id}/link`: a URL signed for this reader, valid `link_ttl_s`."""
        media_id = self._id(request, "media_id")
        actor = self.actor(request)
        await self._access.readable(actor.user_id, media_id)
        expires = int(self._clock.now().timestamp()) + self._link_ttl
        sig = domain.sign_link(self._key, media_id, actor.user_id, expires)
        url = f"{self._urls.media(media_id)}?u={actor.user_id}&exp={expires}&sig={sig}"
        at = iso(datetime.fromtimestamp(expires, UTC))
        return _ok(MediaLink(url=url, expires_at=at))

    async def download(self, request: web.Request) -> web.StreamResponse:
        """`GET mediaUrl`: the file, for a reader; Range and ETag honoured."""
        media_id = self._id(request, "media_id")
        media = await self._access.readable(self._reader(request, media_id), media_id)
        disposition = domain.content_disposition(media.kind, media.file_name)
        return await self._send(request, media.key, media.mime, f'"{media_id}"', disposition)

    async def thumbnail(self, request: web.Request) -> web.StreamResponse:
        """`GET mediaUrl/thumbnail`: the JPEG thumbnail of an image."""
        media_id = self._id(request, "media_id")
        media = await self._access.readable(self._reader(request, media_id), media_id)
        if media.thumb_key is None:
            raise DomainError(ErrorCode.NOT_FOUND, "this media has no thumbnail")
        disposition = domain.content_disposition(Kind.IMAGE, f"thumb-{media.file_name}")
        return await self._send(
            request, media.thumb_key, "image/jpeg", f'"{media_id}-t"', disposition
        )

    async def _send(
        self, request: web.Request, key: str, mime: str, etag: str, disposition: str
    ) -> web.StreamResponse:
        size = await self._storage.size(key)
        headers = dict(SAFE_HEADERS)
        headers.update({"ETag": etag, "Content-Disposition": disposition})
        if _matches(request.headers.get("If-None-Match"), etag):
            return web.Response(status=304, headers=headers)
        start, end, status = 0, size, 200
        wanted = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        # A malformed Range is ignored (RFC 9110 §14.2): the whole file is sent.
        well_formed = wanted is not None and _RANGE.fullmatch(wanted.split(",")[0].strip())
        if wanted is not None and well_formed and (if_range is None or if_range.strip() == etag):
            parsed = _parse_range(wanted, size)
            if parsed is None:
                headers["Content-Range"] = f"bytes */{size}"
                return web.Response(status=416, headers=headers)
            start, end = parsed
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        response = web.StreamResponse(status=status, headers=headers)
        response.content_type = mime
        response.content_length = end - start
        await response.prepare(request)
        if request.method != "HEAD":
            async for chunk in self._storage.read(key, start, end):
                await response.write(chunk)
        await response.write_eof()
        return response


def _matches(header: str | None, etag: str) -> bool:
    if header is None:
        return False
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """One byte range (RFC 9110 §14.1.2) as `[start, end)`; None when unsatisfiable.
    Several ranges are not served as multipart: the first one is."""
    match = _RANGE.fullmatch(header.split(",")[0].strip())
    if match is None or size == 0:
        return None
    first, last = match.group(1), match.group(2)
    if not first:
        if not last or int(last) == 0:
            return None
        return max(0, size - int(last)), size
    start = int(first)
    end = size if not last else min(size, int(last) + 1)
    if start >= size or end <= start:
        return None
    return start, end
