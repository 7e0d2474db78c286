"""W3C trace context across the bus: one client action, one trace id, every process.

The gateway starts a trace for each client event; the `traceparent` header
(`00-<trace id>-<span id>-<flags>`, W3C Trace Context level 1) travels on every NATS
message sent while handling it — the command, the worker's fan-out, events and queries
to other workers, the reply — and each receiver continues it. Log lines carry the trace
id (see logs.py), so `grep <trace id>` over all pods' logs follows one action.

The context lives in contextvars: an asyncio task (one per NATS message in a worker,
one per client event in the gateway) sees its own.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from contextvars import ContextVar, Token

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


def _span_id() -> str:
    return f"{_random.getrandbits(64) or 1:016x}"


def new() -> str:
    """A fresh `traceparent` (new trace id, new span id)."""
    return f"{_VERSION}-{_random.getrandbits(128) or 1:032x}-{_span_id()}-{_FLAGS}"


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


def child(traceparent: str) -> str:
    """The same trace with a new span id (what a process sends on)."""
    return f"{traceparent[:36]}{_span_id()}{traceparent[52:]}"


def begin(headers: Mapping[str, str] | None = None) -> Token[str | None]:
    """Continue the trace of incoming `headers`, or start one; reset with `end`."""
    incoming = headers.get(HEADER) if headers else None
    return current.set(incoming if incoming and valid(incoming) else new())


def end(token: Token[str | None]) -> None:
    """Back to the context before `begin`."""
    current.reset(token)


def outgoing() -> dict[str, str] | None:
    """Headers for a NATS message sent now: the current trace, or none."""
    traceparent = current.get()
    return {HEADER: child(traceparent)} if traceparent else None


def current_trace_id() -> str | None:
    """The trace id of the current work, if any."""
    traceparent = current.get()
    return trace_id(traceparent) if traceparent else None
