"""One logging setup for every process: human-readable lines, or JSON ones.

`CHAT_LOG_FORMAT=json` writes one object per line — `ts`, `level`, `logger`, `msg`,
`service`, `gateway` (a gateway's id), `user` and `trace` (the W3C trace id, trace.py)
where known, `exc` for a traceback — for a log pipeline to index. `text` (the dev
default) stays the plain single line the dev runner prefixes with the process name.
"""

from __future__ import annotations

import logging
import sys
import time

import msgspec

from chat_runtime import trace

#: Logger of start/ready/drain lines, shown whatever CHAT_LOG_LEVEL says.
LIFECYCLE = "chat.lifecycle"

_json = msgspec.json.Encoder()


class JsonFormatter(logging.Formatter):
    """A log record as one JSON object (one line)."""

    def __init__(self, service: str, gateway_id: str | None = None) -> None:
        super().__init__()
        self._fixed: dict[str, str] = {"service": service}
        if gateway_id:
            self._fixed["gateway"] = gateway_id

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            **self._fixed,
        }
        user = trace.user.get()
        if user:
            line["user"] = user
        trace_id = trace.current_trace_id()
        if trace_id:
            line["trace"] = trace_id
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return _json.encode(line).decode()


def setup_logging(
    level: str = "INFO",
    fmt: str = "text",
    service: str = "",
    gateway_id: str | None = None,
) -> None:
    """Records on stderr, plain (`text`) or one JSON object per line (`json`)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(service, gateway_id))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # Ready and draining lines are what supervisors and tests wait for: always shown.
    logging.getLogger(LIFECYCLE).setLevel(logging.INFO)
    # engineio/socketio log every packet at INFO; that is debugging, not operations.
    for noisy in ("engineio.server", "socketio.server", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
