"""Machine-readable error codes of the client protocol (PROTOCOL.md, Acknowledgements)."""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    """Every `code` an ack may carry. Values are the wire strings."""

    VALIDATION_ERROR = "VALIDATION_ERROR"
    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    EDIT_WINDOW_EXPIRED = "EDIT_WINDOW_EXPIRED"
    DELETE_WINDOW_EXPIRED = "DELETE_WINDOW_EXPIRED"
    BLOCKED = "BLOCKED"
    RATE_LIMITED = "RATE_LIMITED"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    CONFLICT = "CONFLICT"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"
    #: An event this deployment does not serve (no handler yet, or calls/media left out).
    NOT_IMPLEMENTED = "NOT_IMPLEMENTED"


class DomainError(Exception):
    """A refusal a handler turns into `{status:'error', code, error}`.

    Raised by pure domain rules and by stores; never retried by the client because
    the same input gives the same answer.
    """

    def __init__(self, code: ErrorCode, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class RetryableError(Exception):
    """A transient refusal: the ack is `{status:'retry', code, retryAfter}`."""

    def __init__(self, code: ErrorCode, message: str, *, retry_after_ms: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms
