"""Prometheus metrics of the shared runtime: the bus and the worker runner.

Served on the ops port (`/metrics`, ops.py). Label values are bounded: subjects are
`cmd.<domain>.<action>` from the routes table, outcomes the reply statuses, operations
the store Protocol's method names. Labelled children are looked up once and cached by
their callers: `labels()` costs about a microsecond, `inc()` a fraction of one.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

#: Latency buckets (s) from 0.5 ms (a SQLite commit, a NATS round trip) to 10 s
#: (past the 5 s ack timeout).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

NATS_REQUEST_FAILURES = Counter(
    "chat_nats_request_failures",
    "NATS requests that got no reply: timeout, or no responders",
    ["subject", "reason"],
)
COMMANDS = Counter(
    "chat_worker_commands",
    "Commands handled by this worker, by subject and outcome (ok, error, retry)",
    ["subject", "outcome"],
)
COMMAND_SECONDS = Histogram(
    "chat_worker_command_seconds",
    "Time from receiving a command to its reply being sent",
    ["subject"],
    buckets=LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge("chat_worker_in_flight", "Commands being handled right now", ["domain"])
STORE_SECONDS = Histogram(
    "chat_store_seconds",
    "Latency of store calls, by method",
    ["operation"],
    buckets=LATENCY_BUCKETS,
)
