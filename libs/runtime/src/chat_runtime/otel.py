"""Optional OpenTelemetry export: spans to an OTLP/HTTP collector (CHAT_OTEL_ENDPOINT).

Off by default, and then never imported. When on, each traced unit of work (a client
event in the gateway, a command in a worker; trace.py) is also a span: the gateway's
span starts the trace, a worker's span is its child through the `traceparent` the
command carried, and the NATS messages sent while it runs carry the span's own id, so
the collector sees gateway → worker → worker as one tree. Export is batched on a
background thread (BatchSpanProcessor); the event loop only builds the span.
"""

from __future__ import annotations

from typing import Any

from chat_runtime import trace


class OtelMissing(Exception):
    """CHAT_OTEL_ENDPOINT is set but the `otel` extra is not installed."""


class _Spans:
    """What trace.py calls: start a span (child of a traceparent, or a new trace)."""

    def __init__(self, tracer: Any, provider: Any) -> None:
        from opentelemetry.context import Context
        from opentelemetry.trace import (
            NonRecordingSpan,
            SpanContext,
            SpanKind,
            TraceFlags,
            set_span_in_context,
        )

        self._tracer = tracer
        self.provider = provider
        self._root = Context()
        self._kind = SpanKind.SERVER
        self._remote = (NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context)

    def start(self, name: str, parent: str | None) -> tuple[Any, str]:
        """A started span and the traceparent that names it."""
        context = self._root
        if parent is not None:
            span_class, span_context, flags, in_context = self._remote
            remote = span_context(
                trace_id=int(parent[3:35], 16),
                span_id=int(parent[36:52], 16),
                is_remote=True,
                trace_flags=flags(int(parent[53:55], 16)),
            )
            context = in_context(span_class(remote), self._root)
        span = self._tracer.start_span(name, context=context, kind=self._kind)
        ids = span.get_span_context()
        return span, f"00-{ids.trace_id:032x}-{ids.span_id:016x}-{int(ids.trace_flags):02x}"


def setup(endpoint: str, service: str) -> Any:
    """Export spans of this process to `endpoint` (`http://collector:4318/v1/traces`);
    returns the SDK's TracerProvider (its `shutdown()` flushes)."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise OtelMissing(
            f"CHAT_OTEL_ENDPOINT needs the OpenTelemetry SDK (chat-runtime[otel]): {exc}"
        ) from None
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    spans = _Spans(provider.get_tracer("chat"), provider)
    trace.export_spans(spans)
    return provider
