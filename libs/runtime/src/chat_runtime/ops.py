"""The ops HTTP server every process runs: `/healthz`, `/readyz`, `/metrics`.

A few lines of HTTP/1.1 on `asyncio.start_server` rather than a web framework: the
workers have none (aiohttp is the gateway's), the checks are coroutines on the
process's own loop (a NATS flag, a Redis or MongoDB ping), and a probe every few seconds
needs no more. One request per connection (`Connection: close`), as kubelet and
Prometheus send them.

- `/healthz`: 200 once the process has started (connected at least once), 503 before —
  so a startup probe covers a slow NATS at boot and liveness never restarts a pod for an
  outage of something else.
- `/readyz`: 200 while every registered check passes and the process is not draining;
  503 with the failing checks named otherwise.
- `/metrics`: the Prometheus text format of the process's registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from chat_runtime.logs import LIFECYCLE

log = logging.getLogger(LIFECYCLE)

Check = Callable[[], Awaitable[bool]]

#: A check slower than this counts as failed (the probe's own timeout is 3 s).
CHECK_TIMEOUT_S = 1.0
#: A client that has not sent its request line and headers by then is dropped.
READ_TIMEOUT_S = 5.0
MAX_REQUEST_BYTES = 8_192

_json = msgspec.json.Encoder()


class Ops:
    """Health state and the HTTP server that reports it."""

    def __init__(self, service: str, registry: CollectorRegistry = REGISTRY) -> None:
        self.service = service
        self.registry = registry
        self.started = False
        self.draining = False
        self._checks: dict[str, Check] = {}
        self._server: asyncio.Server | None = None

    def add_check(self, name: str, check: Check) -> None:
        """A readiness condition (`nats`, `redis`, `store`...)."""
        self._checks[name] = check

    async def readiness(self) -> dict[str, bool]:
        """Every check's result, run concurrently, each bounded by CHECK_TIMEOUT_S."""
        names = list(self._checks)
        results = await asyncio.gather(
            *(self._run(self._checks[name]) for name in names), return_exceptions=False
        )
        return dict(zip(names, results, strict=True))

    @staticmethod
    async def _run(check: Check) -> bool:
        try:
            return bool(await asyncio.wait_for(check(), CHECK_TIMEOUT_S))
        except Exception:  # a failing dependency is a `false`, never a 500
            log.debug("readiness check failed", exc_info=True)
            return False

    async def serve(self, host: str, port: int) -> int:
        """Listen; the bound port (`port` 0 picks a free one)."""
        self._server = await asyncio.start_server(self._handle, host, port)
        bound: int = self._server.sockets[0].getsockname()[1]
        log.info("%s ops on http://%s:%d", self.service, host, bound)
        return bound

    async def close(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            writer.close()
            return
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        path = parts[1].split("?", 1)[0] if len(parts) == 3 else ""
        if parts[0] not in ("GET", "HEAD"):
            status, ctype, body = 405, "text/plain", b"method not allowed\n"
        else:
            status, ctype, body = await self._route(path)
        payload = b"" if parts[0] == "HEAD" else body
        writer.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n"
            % (status, _REASONS[status], ctype.encode(), len(body))
            + payload
        )
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()

    async def _route(self, path: str) -> tuple[int, str, bytes]:
        if path == "/healthz":
            ok = self.started
            health = {"status": "ok" if ok else "starting", "service": self.service}
            return (200 if ok else 503), "application/json", _json.encode(health)
        if path == "/readyz":
            checks = await self.readiness()
            ok = self.started and not self.draining and all(checks.values())
            ready = {"ready": ok, "draining": self.draining, "checks": checks}
            return (200 if ok else 503), "application/json", _json.encode(ready)
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        return 404, "text/plain", b"not found\n"


#: The process's one ops surface (like prometheus_client's REGISTRY): the runner and
#: the store set-up register their checks on it.
PROCESS = Ops("")

_REASONS = {
    200: b"OK",
    404: b"Not Found",
    405: b"Method Not Allowed",
    503: b"Service Unavailable",
}
