"""The media HTTP API's Prometheus metrics (served on the ops port, chat_runtime.ops).

Every request is counted by route template, method and status, and timed by route
template and method. Label values are bounded: a route is the template it matched
(`/v1/uploads/{upload_id}`, never the raw path with its id), and a request that matched
none (404, 405) is `unmatched`; a method outside the HTTP set is `other`. The worker
side (`cmd.media.*`) is counted by the runtime's `chat_worker_*` metrics.
"""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import Counter, Histogram

from chat_media.wire import Handler
from chat_runtime.metrics import LATENCY_BUCKETS

REQUESTS = Counter(
    "chat_media_http_requests",
    "HTTP requests answered, by route template, method and status",
    ["method", "route", "status"],
)
REQUEST_SECONDS = Histogram(
    "chat_media_http_request_seconds",
    "Time from a request to its handler's response (a streamed download: until its "
    "last byte is written), by route template and method",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
#: The route label of a request that matched no route.
UNMATCHED = "unmatched"
#: Methods a label may name; any other (a client may send any token) is OTHER_METHOD.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"

#: Labelled children, looked up once (`labels()` costs about a microsecond).
_counted: dict[tuple[str, str, int], Counter] = {}
_timed: dict[tuple[str, str], Histogram] = {}


def route_of(request: web.Request) -> str:
    """The template of the route `request` matched, or UNMATCHED."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


def observe(method: str, route: str, status: int, seconds: float) -> None:
    """One request answered."""
    counted = _counted.get((method, route, status))
    if counted is None:
        counted = _counted[(method, route, status)] = REQUESTS.labels(method, route, str(status))
    counted.inc()
    timed = _timed.get((method, route))
    if timed is None:
        timed = _timed[(method, route)] = REQUEST_SECONDS.labels(method, route)
    timed.observe(seconds)


@web.middleware
async def measured(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time every request; the outermost middleware, so that it sees the
    status the error middleware chose."""
    started = time.perf_counter()
    # aiohttp raises its own 404/405 (and handlers may raise HTTPExceptions); anything
    # else escaping the error middleware reaches the client as a 500.
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        method = request.method if request.method in METHODS else OTHER_METHOD
        observe(method, route_of(request), status, time.perf_counter() - started)
