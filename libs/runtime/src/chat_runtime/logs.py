"""One logging setup for every process."""

from __future__ import annotations

import logging
import sys

#: Logger of start/ready/drain lines, shown whatever CHAT_LOG_LEVEL says.
LIFECYCLE = "chat.lifecycle"


def setup_logging(level: str = "INFO") -> None:
    """Plain single-line records on stderr; the dev runner prefixes each process's name."""
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # Ready and draining lines are what supervisors and tests wait for: always shown.
    logging.getLogger(LIFECYCLE).setLevel(logging.INFO)
    # engineio/socketio log every packet at INFO; that is debugging, not operations.
    for noisy in ("engineio.server", "socketio.server", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
