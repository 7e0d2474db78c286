"""The media service's HTTP API bodies (PROTOCOL.md, "Uploads"); its OpenAPI document
is built from these Structs (`chat_media.openapi`)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

#: Largest size a client may declare at all (2^53 - 1: exact in JavaScript); the
#: configured limit (100 MiB by default) is checked by the service.
MAX_DECLARED_SIZE = 2**53 - 1

UploadState = Literal["open", "complete", "failed", "expired"]


class UploadRequest(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """`POST /v1/uploads`: a file the client is about to send."""

    file_name: Annotated[str, Meta(min_length=1, max_length=1_024)]
    size: Annotated[int, Meta(ge=1, le=MAX_DECLARED_SIZE)]
    #: The client's idea of the type; informative only (the content is sniffed).
    mime_type: Annotated[str, Meta(max_length=255)] | None = None


class UploadCreated(msgspec.Struct, kw_only=True, rename="camel"):
    """The answer to `POST /v1/uploads`: where to `PUT` the bytes."""

    upload_id: str
    upload_url: str


class UploadStatus(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """The answer to `PUT uploadUrl`: how far the upload is; the media once complete."""

    upload_id: str
    file_name: str
    size: int
    bytes_received: int
    state: UploadState
    media_url: str | None = None
    mime_type: str | None = None
    width: int | None = None
    height: int | None = None
    thumbnail_url: str | None = None


class MediaLink(msgspec.Struct, kw_only=True, rename="camel"):
    """`GET /v1/media/{mediaId}/link`: a download URL that needs no token until `expiresAt`."""

    url: str
    expires_at: str


class HttpError(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every refusal: the same fields as an ack's error."""

    status: Literal["error", "retry"]
    code: str
    error: str
    field: str | None = None
    retry_after: Annotated[int, Meta(ge=0)] | None = msgspec.field(default=None, name="retryAfter")
