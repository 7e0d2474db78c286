"""W3C traceparent handling and the JSON log line that carries it."""

from __future__ import annotations

import json
import logging

from chat_runtime import trace
from chat_runtime.logs import JsonFormatter


def test_a_new_traceparent_is_valid_and_fresh() -> None:
    first, second = trace.new(), trace.new()
    assert trace.valid(first)
    assert trace.trace_id(first) != trace.trace_id(second)


def test_begin_continues_a_valid_header_and_replaces_a_bad_one() -> None:
    incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    token = trace.begin({"traceparent": incoming})
    try:
        assert trace.current_trace_id() == "4bf92f3577b34da6a3ce929d0e0e4736"
        sent = trace.outgoing()
        assert sent is not None
        assert trace.trace_id(sent["traceparent"]) == "4bf92f3577b34da6a3ce929d0e0e4736"
    finally:
        trace.end(token)
    assert trace.current_trace_id() is None
    assert trace.outgoing() is None
    for bad in ("junk", "00-" + "0" * 32 + "-00f067aa0ba902b7-01", incoming.upper()):
        token = trace.begin({"traceparent": bad})
        try:
            assert trace.current_trace_id() not in (None, bad[3:35])
        finally:
            trace.end(token)


def test_a_json_line_names_service_gateway_user_and_trace() -> None:
    formatter = JsonFormatter("gateway", "gw-1")
    record = logging.LogRecord("chat", logging.INFO, __file__, 1, "sent %s", ("x",), None)
    token = trace.begin()
    user = trace.user.set("alice")
    try:
        line = json.loads(formatter.format(record))
        trace_id = trace.current_trace_id()
    finally:
        trace.user.reset(user)
        trace.end(token)
    assert line["msg"] == "sent x"
    assert (line["service"], line["gateway"], line["user"], line["trace"]) == (
        "gateway",
        "gw-1",
        "alice",
        trace_id,
    )
    assert line["level"] == "INFO"
    assert line["ts"].endswith("Z")


def test_a_traceback_stays_inside_the_one_line() -> None:
    formatter = JsonFormatter("groups")
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("chat", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = formatter.format(record)
    assert "\n" not in text
    assert "ValueError: boom" in json.loads(text)["exc"]
    assert "trace" not in json.loads(text)
