"""The gateway's Prometheus metrics (served on the ops port, chat_runtime.ops).

Counted where they happen: connects and refusals, events in, acks and their latency,
slow-client cut-offs. Read at scrape time instead of counted on the hot path: sockets
by transport (a walk over the registry, every 15 s) and fan-out deliveries (the counter
`Delivery` keeps anyway) — a per-delivery `inc()` would cost more than the delivery —
and the parsed events queued on sockets (at most `socket_max_in_flight` per socket).
NATS request timeouts are the runtime's `chat_nats_request_failures`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from chat_contracts.routes import ROUTES
from chat_runtime.metrics import LATENCY_BUCKETS

if TYPE_CHECKING:
    from chat_gateway.app import Gateway

CONNECTS = Counter("chat_gateway_connects", "Sockets that completed the handshake")
REFUSALS = Counter("chat_gateway_connect_refusals", "Handshakes refused, by error code", ["code"])
EVENTS = Counter("chat_gateway_events", "Client events received, by event name", ["event"])
ACKS = Counter("chat_gateway_acks", "Acks sent, by status and code", ["status", "code"])
ACK_SECONDS = Histogram(
    "chat_gateway_ack_seconds",
    "Time from a client event to its ack, by event name",
    ["event"],
    buckets=LATENCY_BUCKETS,
)
SLOW_CLIENT_CUTOFFS = Counter(
    "chat_gateway_slow_client_cutoffs", "Sockets closed because they did not read their output"
)
#: Event names outside the contract share one label value (bounded cardinality).
UNKNOWN_EVENT = "unknown"


class EventMetrics:
    """Per-event children resolved once (a `labels()` lookup per event costs ~1 us)."""

    def __init__(self) -> None:
        names = [route.event for route in ROUTES] + [UNKNOWN_EVENT]
        self._events = {name: EVENTS.labels(name) for name in names}
        self._latency = {name: ACK_SECONDS.labels(name) for name in names}
        self._acks: dict[tuple[str, str], Counter] = {}

    def observe(self, event: str, status: str, code: str | None, seconds: float) -> None:
        """One event handled: counted, its ack counted, its latency recorded."""
        name = event if event in self._events else UNKNOWN_EVENT
        self._events[name].inc()
        self._latency[name].observe(seconds)
        key = (status, code or "")
        child = self._acks.get(key)
        if child is None:
            child = self._acks[key] = ACKS.labels(*key)
        child.inc()


class GatewayCollector(Collector):
    """Sockets by transport and fan-out deliveries, read from the gateway at scrape."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    def collect(self) -> Iterator[Metric]:
        sockets = GaugeMetricFamily(
            "chat_gateway_sockets", "Connected sockets, by transport", labels=["transport"]
        )
        for transport, count in sorted(self._gateway.sockets_by_transport().items()):
            sockets.add_metric([transport], count)
        yield sockets
        yield CounterMetricFamily(
            "chat_gateway_fanout_deliveries",
            "Fan-out frames handed to local sockets",
            value=self._gateway.delivery.delivered,
        )
        yield GaugeMetricFamily(
            "chat_gateway_queued_events",
            "Parsed client events waiting for their socket's handler (WebSocket path)",
            value=self._gateway.queued_events(),
        )
