"""The OpenAPI 3.1 document of the media API, built from the contract Structs.

Request and response bodies are the msgspec Structs of `chat_contracts.media`, whose
JSON Schemas (2020-12, what OpenAPI 3.1 uses) msgspec generates, so the document cannot
drift from what the service decodes and encodes. Served at `/v1/openapi.json`; checked
by `tests/test_openapi.py` (schemathesis against the running service).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec

from chat_contracts.ids import ID_PATTERN
from chat_contracts.media import HttpError, MediaLink, UploadCreated, UploadRequest, UploadStatus

REF = "#/components/schemas/{name}"


def _json(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": REF.format(name=name)}}}


def _errors(*codes: int) -> dict[str, Any]:
    reasons = {
        400: "invalid request (`field` names the bad part)",
        401: "missing, expired or forged bearer token (or signed link)",
        404: "no such upload or media for this user",
        409: "the upload is not open, or the chunk does not start where the stored bytes end",
        413: "larger than the limit or than the declared size",
        415: "the content's type is not allowed (sniffed, not taken from the name)",
        416: "the range is outside the file",
        412: "tus: the request is not Tus-Resumable 1.0.0",
        429: "too many uploads at once, or the daily quota is used up",
        503: "a service this answer needs did not reply in time: retry after `retryAfter` ms",
    }
    out = {str(c): {"description": reasons[c], "content": _json("HttpError")} for c in codes}
    if 400 in codes:
        # A request line or header block past aiohttp's 8 KiB limit is refused by the
        # HTTP parser itself, before any handler, as text.
        out["400"]["content"] = {**_json("HttpError"), "text/plain": {"schema": {"type": "string"}}}
    return out


def _header(name: str, schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": required, "schema": schema}


_TUS = _header("Tus-Resumable", {"type": "string", "const": "1.0.0"})
_ID_PARAM = {"schema": {"type": "string", "pattern": ID_PATTERN}, "required": True}
_BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
_FILE = {"*/*": {"schema": {"type": "string", "format": "binary"}}}
_SAFE = {
    "ETag": {"schema": {"type": "string"}},
    "Content-Disposition": {"schema": {"type": "string"}},
    "X-Content-Type-Options": {"schema": {"type": "string", "const": "nosniff"}},
}


@cache
def document(max_bytes: int) -> dict[str, Any]:
    """The whole document (built once), with this deployment's size limit."""
    _, components = msgspec.json.schema_components(
        [UploadRequest, UploadCreated, UploadStatus, MediaLink, HttpError],
        ref_template=REF,
    )
    components["UploadRequest"]["properties"]["size"]["maximum"] = max_bytes
    upload_id = {"name": "upload_id", "in": "path", **_ID_PARAM}
    media_id = {"name": "media_id", "in": "path", **_ID_PARAM}
    signed = [
        {"name": n, "in": "query", "required": False, "schema": {"type": t}}
        for n, t in (("u", "string"), ("exp", "integer"), ("sig", "string"))
    ]
    download = {
        "summary": "Download (bearer token or signed link); Range and If-None-Match honoured",
        "security": [{"bearer": []}, {}],
        "parameters": [media_id, *signed],
        "responses": {
            "200": {"description": "the file", "headers": _SAFE, "content": _FILE},
            "206": {"description": "the requested range", "headers": _SAFE, "content": _FILE},
            "304": {"description": "not modified (ETag matched)"},
            **_errors(400, 401, 404, 416, 503),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "chat media",
            "version": "1",
            "description": "Uploads with realtime progress on the uploader's sockets "
            "(upload:progress / upload:complete / upload:failed), and authorised downloads.",
        },
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/uploads": {
                "post": {
                    "summary": "Start an upload",
                    "requestBody": {"required": True, "content": _json("UploadRequest")},
                    "responses": {
                        "201": {"description": "created", "content": _json("UploadCreated")},
                        **_errors(400, 401, 413, 429),
                    },
                }
            },
            "/v1/uploads/{upload_id}": {
                "put": {
                    "summary": "Send bytes: the whole file, or a Content-Range chunk to resume",
                    "parameters": [
                        upload_id,
                        {
                            "name": "Content-Range",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "pattern": r"^bytes (\d+-\d+|\*)/\d+$"},
                        },
                    ],
                    "requestBody": {"required": True, "content": _BINARY},
                    "responses": {
                        "200": {"description": "stored so far", "content": _json("UploadStatus")},
                        **_errors(400, 401, 404, 409, 413, 415),
                    },
                },
                "head": {
                    "summary": "Bytes stored so far (Upload-Offset) of the declared size",
                    "parameters": [upload_id],
                    "responses": {
                        "200": {
                            "description": "the session",
                            "headers": {
                                "Upload-Offset": {"schema": {"type": "integer"}},
                                "Upload-Length": {"schema": {"type": "integer"}},
                            },
                        },
                        "401": {"description": "missing or bad token"},
                        "404": {"description": "no such upload for this user"},
                    },
                },
            },
            "/v1/media/{media_id}": {"get": download},
            "/v1/media/{media_id}/thumbnail": {
                "get": {**download, "summary": "The JPEG thumbnail of an image"}
            },
            "/v1/media/{media_id}/link": {
                "get": {
                    "summary": "A download URL signed for the caller (no token until expiresAt)",
                    "parameters": [media_id],
                    "responses": {
                        "200": {"description": "the link", "content": _json("MediaLink")},
                        **_errors(400, 401, 404, 503),
                    },
                }
            },
            "/v1/tus": {
                "options": {
                    "summary": "tus 1.0: what this server speaks (core, creation)",
                    "security": [],
                    "responses": {
                        "204": {"description": "Tus-Version, Tus-Extension, Tus-Max-Size"}
                    },
                },
                "post": {
                    "summary": "tus creation: Upload-Length and Upload-Metadata (filename)",
                    "parameters": [
                        _TUS,
                        _header(
                            "Upload-Length", {"type": "integer", "minimum": 1, "maximum": max_bytes}
                        ),
                        _header("Upload-Metadata", {"type": "string"}, required=False),
                    ],
                    "responses": {
                        "201": {"description": "created; Location is the upload URL"},
                        **_errors(400, 401, 412, 413, 429),
                    },
                },
            },
            "/v1/tus/{upload_id}": {
                "head": {
                    "summary": "tus: the offset to resume at (Upload-Offset)",
                    "parameters": [upload_id, _TUS],
                    "responses": {
                        "200": {"description": "Upload-Offset, Upload-Length"},
                        "401": {"description": "missing or bad token"},
                        "404": {"description": "no such upload for this user"},
                        "412": {"description": "not Tus-Resumable 1.0.0"},
                    },
                },
                "patch": {
                    "summary": "tus: bytes at exactly Upload-Offset",
                    "parameters": [
                        upload_id,
                        _TUS,
                        _header(
                            "Upload-Offset", {"type": "integer", "minimum": 0, "maximum": max_bytes}
                        ),
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/offset+octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    },
                    "responses": {
                        "204": {"description": "stored; Upload-Offset is the new offset"},
                        **_errors(400, 401, 404, 409, 412, 413, 415),
                    },
                },
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness",
                    "security": [],
                    "responses": {"200": {"description": "alive"}},
                }
            },
        },
    }
