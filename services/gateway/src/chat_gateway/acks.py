"""Building the ack a client gets: from a worker `Reply`, a local result, or a refusal."""

from __future__ import annotations

from typing import Any

import msgspec

from chat_contracts import DomainError, ErrorCode, RetryableError
from chat_contracts.bus import Reply

Ack = dict[str, Any]

_result_decoder = msgspec.msgpack.Decoder(dict[str, Any])


def from_reply(reply: Reply, retry_count: int | None = None) -> Ack:
    """A worker's reply as the ack: result keys merged next to `status`."""
    ack: Ack = {"status": reply.status}
    if reply.status == "ok" and reply.result is not None:
        ack.update(_result_decoder.decode(reply.result))
    if reply.code is not None:
        ack["code"] = reply.code
    if reply.error is not None:
        ack["error"] = reply.error
    if reply.field is not None:
        ack["field"] = reply.field
    if reply.retry_after is not None:
        ack["retryAfter"] = reply.retry_after
    if retry_count is not None:
        ack["retryCount"] = retry_count
    return ack


def ok(result: msgspec.Struct | None = None) -> Ack:
    """A local success."""
    ack: Ack = {"status": "ok"}
    if result is not None:
        ack.update(msgspec.to_builtins(result))
    return ack


def error(code: ErrorCode, message: str, field: str | None = None) -> Ack:
    """A refusal that will not change on retry."""
    ack: Ack = {"status": "error", "code": code.value, "error": message}
    if field is not None:
        ack["field"] = field
    return ack


def retry(code: ErrorCode, message: str, retry_after_ms: int) -> Ack:
    """A transient refusal."""
    return {"status": "retry", "code": code.value, "error": message, "retryAfter": retry_after_ms}


def validation(exc: msgspec.ValidationError) -> Ack:
    """A payload that does not match its contract, naming the field."""
    text = str(exc)
    field = text.rsplit("at `$.", 1)[1].rstrip("`") if "at `$." in text else None
    return error(ErrorCode.VALIDATION_ERROR, text, field)


def refusal(exc: DomainError | RetryableError) -> Ack:
    """The ack of a refusal raised by a service query (`Bus.query`)."""
    if isinstance(exc, RetryableError):
        return retry(exc.code, exc.message, exc.retry_after_ms)
    return error(exc.code, exc.message, exc.field)
