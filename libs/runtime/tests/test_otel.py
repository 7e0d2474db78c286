"""Optional span export: what an OTLP/HTTP collector receives (a real HTTP receiver here
decoding the protobuf the SDK's exporter posts)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest_asyncio
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from chat_runtime import otel, trace

INCOMING = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class Collector:
    """Spans posted to /v1/traces: (name, trace id, span id, parent id, attributes)."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, str, str, dict[str, str]]] = []
        self.services: set[str] = set()

    async def receive(self, request: web.Request) -> web.Response:
        body = ExportTraceServiceRequest.FromString(await request.read())
        for resource in body.resource_spans:
            for attr in resource.resource.attributes:
                if attr.key == "service.name":
                    self.services.add(attr.value.string_value)
            for scope in resource.scope_spans:
                for span in scope.spans:
                    attrs = {a.key: a.value.string_value for a in span.attributes}
                    self.spans.append(
                        (
                            span.name,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            attrs,
                        )
                    )
        return web.Response(status=200)


@pytest_asyncio.fixture
async def collector() -> AsyncIterator[tuple[Collector, str]]:
    sink = Collector()
    app = web.Application()
    app.router.add_post("/v1/traces", sink.receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield sink, f"http://127.0.0.1:{port}/v1/traces"
    await runner.cleanup()


async def test_a_command_span_is_the_child_of_the_senders_span(
    collector: tuple[Collector, str],
) -> None:
    sink, endpoint = collector
    provider = otel.setup(endpoint, "groups")
    try:
        # A worker handling a command whose message carried INCOMING.
        traced = trace.begin({trace.HEADER: INCOMING}, "cmd.groups.create")
        user = trace.user.set("ann")
        sent = trace.outgoing()
        trace.end(traced)
        trace.user.reset(user)
        # A gateway event starts a trace of its own.
        fresh = trace.begin(name="group:create")
        trace.end(fresh)
        # The exporter posts from its own thread: flush it off the event loop.
        assert await asyncio.to_thread(provider.force_flush, 5_000)
    finally:
        trace.export_spans(None)
        await asyncio.to_thread(provider.shutdown)
    assert sink.services == {"groups"}
    by_name = {span[0]: span for span in sink.spans}
    _, trace_id, span_id, parent_id, attrs = by_name["cmd.groups.create"]
    assert (trace_id, parent_id) == (INCOMING[3:35], INCOMING[36:52])
    assert attrs == {"enduser.id": "ann"}
    # What it sends on names its own span, so the next receiver is its child.
    assert sent == {trace.HEADER: f"00-{trace_id}-{span_id}-01"}
    _, new_trace, _, new_parent, _ = by_name["group:create"]
    assert new_trace != trace_id
    assert new_parent == ""
