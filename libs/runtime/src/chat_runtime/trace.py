"""W3C trace context across the bus: one client action, one trace id, every process.

The gateway starts a trace for each client event; the `traceparent` header
(`00-<trace id>-<span id>-<flags>`, W3C Trace Context level 1) travels on every NATS
message sent while handling it — the command, the worker's fan-out, events and queries
to other workers, the reply — and each receiver continues it. With CHAT_OTEL_ENDPOINT
each unit of work is also an exported span (otel.py). Log lines carry the trace
id (see logs.py), so `grep <trace id>` over all pods' logs follows one action.

The context lives in contextvars: an asyncio task (one per NATS message in a worker,
one per client event in the gateway) sees its own.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from contextvars import ContextVar, Token
from typing import Any, Protocol

HEADER = "traceparent"
_VERSION = "00"
#: Sampled: whoever exports spans (OpenTelemetry, when configured) keeps this trace.
_FLAGS = "01"
_HEX = frozenset("0123456789abcdef")

#: The current `traceparent`, or None outside any traced work.
current: ContextVar[str | None] = ContextVar("traceparent", default=None)
#: The user on whose behalf the current work runs (for log lines), where known.
user: ContextVar[str | None] = ContextVar("trace_user", default=None)

# Trace ids need uniqueness, not secrecy: getrandbits is 0.1 us, secrets 1 us.
_random = random.Random()


def new() -> str:
    """A fresh `traceparent` (new trace id, new span id)."""
    trace_id = _random.getrandbits(128) or 1
    span_id = _random.getrandbits(64) or 1
    return f"{_VERSION}-{trace_id:032x}-{span_id:016x}-{_FLAGS}"


def valid(traceparent: str) -> bool:
    """Whether a header value is a version-00 traceparent with non-zero ids."""
    if len(traceparent) != 55 or traceparent[2] != "-" or traceparent[35] != "-":
        return False
    if traceparent[52] != "-" or not set(traceparent.replace("-", "")) <= _HEX:
        return False
    return traceparent[3:35] != "0" * 32 and traceparent[36:52] != "0" * 16


def trace_id(traceparent: str) -> str:
    """The 32-hex-digit trace id of a traceparent."""
    return traceparent[3:35]


class Spans(Protocol):
    """An exporter of spans (otel.py), when CHAT_OTEL_ENDPOINT turns one on."""

    def start(self, name: str, parent: str | None) -> tuple[Any, str]: ...


_spans: Spans | None = None


def export_spans(spans: Spans | None) -> None:
    """Make every `begin` also start a span (None: back to ids only)."""
    global _spans
    _spans = spans


class Traced:
    """What `begin` returns and `end` takes back."""

    __slots__ = ("span", "token")

    def __init__(self, token: Token[str | None], span: Any = None) -> None:
        self.token = token
        self.span = span


def begin(headers: Mapping[str, str] | None = None, name: str = "work") -> Traced:
    """Continue the trace of incoming `headers`, or start one; close it with `end`.

    `name` names the span when spans are exported (the event, the command subject).
    """
    incoming = headers.get(HEADER) if headers else None
    parent = incoming if incoming and valid(incoming) else None
    if _spans is None:
        return Traced(current.set(parent or new()))
    span, traceparent = _spans.start(name, parent)
    return Traced(current.set(traceparent), span)


def end(traced: Traced) -> None:
    """Back to the context before `begin` (and the span, if any, ends)."""
    if traced.span is not None:
        who = user.get()
        if who:
            traced.span.set_attribute("enduser.id", who)
        traced.span.end()
    current.reset(traced.token)


def outgoing() -> dict[str, str] | None:
    """Headers for a NATS message sent now: the current trace, or none.

    The parent id is this unit of work's own span id (W3C: the caller's span), so a
    receiver's span is its child in an exporter's tree.
    """
    traceparent = current.get()
    return {HEADER: traceparent} if traceparent else None


def current_trace_id() -> str | None:
    """The trace id of the current work, if any."""
    traceparent = current.get()
    return trace_id(traceparent) if traceparent else None
