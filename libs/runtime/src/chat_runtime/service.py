"""`__main__` plumbing shared by every worker service: settings → connect → serve → drain."""

from __future__ import annotations

import asyncio
import inspect
import io
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

from chat_runtime import nats_auth
from chat_runtime.bus import Bus
from chat_runtime.logs import LIFECYCLE, setup_logging
from chat_runtime.metrics import STORE_SECONDS
from chat_runtime.mongo import MongoSetupError, connect_mongo, require_replica_set
from chat_runtime.ops import PROCESS, Ops
from chat_runtime.settings import BaseSettings, exit_on_error, load_settings
from chat_runtime.worker import Router, Worker, run, wait_for_shutdown

log = logging.getLogger(LIFECYCLE)

S = TypeVar("S", bound=BaseSettings)

#: Builds a service's router from its settings and bus; the context manager owns the
#: store (opened on enter, closed on exit) and any background work.
Build = Callable[[S, Bus], AbstractAsyncContextManager[Router]]


#: A drain still running this long after SIGTERM logs where every task waits (s):
#: after the worker's `DRAIN_S` (6 s) and before a process manager's SIGKILL (10 s in
#: the tests, 30 s in Kubernetes), so a slow shutdown explains itself in the log.
STUCK_DRAIN_S = 8.0


async def start_ops(name: str, settings: BaseSettings) -> Ops:
    """The process's ops server (when CHAT_HEALTH_PORT is set), "starting" until told."""
    PROCESS.service = name
    if settings.health_port is not None:
        await PROCESS.serve(settings.health_host, settings.health_port)
    return PROCESS


def bus_check(bus: Bus) -> Callable[[], Any]:
    """Readiness: the NATS connection is up."""

    async def check() -> bool:
        return bus.connected

    return check


async def serve(name: str, settings: S, build: Build[S], *, rooms: bool = True) -> None:
    """Connect to NATS, serve the router until SIGTERM/SIGINT, then drain and close.

    `rooms=False`: the service never publishes into rooms (media: to users only), so it
    does not follow the other workers' room joins.
    """
    ops = await start_ops(name, settings)
    bus = await nats_auth.connect(settings, name)
    ops.add_check("nats", bus_check(bus))
    if rooms:
        # Before serving: the first command may publish into a room someone just joined.
        await bus.track_joins(name)
    async with build(settings, bus) as router:
        worker = Worker(bus, router, settings.max_in_flight)
        await worker.start()
        ops.started = True
        log.info("%s ready: %s", name, ", ".join(router.actions))
        await wait_for_shutdown()
        ops.draining = True
        log.info("%s draining", name)
        asyncio.get_running_loop().call_later(STUCK_DRAIN_S, log_waiting_tasks, name)
        await worker.stop()
    await bus.close()
    await ops.close()
    log.info("%s stopped", name)


def log_waiting_tasks(name: str) -> None:
    """Log the stack of every task still running (a shutdown that takes too long)."""
    stacks = []
    for task in asyncio.all_tasks():
        out = io.StringIO()
        task.print_stack(limit=8, file=out)
        stacks.append(out.getvalue())
    log.warning("%s still draining; tasks:\n%s", name, "\n".join(stacks))


class Store(Protocol):
    """What `opened_store` needs of a repository implementation."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...


St = TypeVar("St", bound=Store)


@asynccontextmanager
async def opened_store(
    settings: BaseSettings,
    file_name: str,
    sqlite: Callable[[Path], St],
    mongo: Callable[[str, str], St],
) -> AsyncIterator[St]:
    """The store `CHAT_STORE` selects, opened for the block and closed after it.

    MongoDB must be a replica set (or a mongos): raises `MongoSetupError` otherwise,
    before anything is served.
    """
    if settings.store == "mongo":
        await require_replica_set(settings.mongodb_url)
        store = mongo(settings.mongodb_url, settings.mongodb_db)
        PROCESS.add_check("store", mongo_check(settings))
    else:
        store = sqlite(Path(settings.sqlite_dir) / file_name)
        PROCESS.add_check("store", sqlite_check(Path(settings.sqlite_dir)))
    await store.open()
    try:
        yield timed(store)
    finally:
        await store.close()


def mongo_check(settings: BaseSettings) -> Callable[[], Any]:
    """Readiness: MongoDB answers a ping (a client of its own: one idle connection)."""
    client, _ = connect_mongo(settings.mongodb_url, settings.mongodb_db)

    async def check() -> bool:
        await client.admin.command("ping")
        return True

    return check


def sqlite_check(directory: Path) -> Callable[[], Any]:
    """Readiness: the SQLite directory is still writable (a full or lost volume is not)."""

    async def check() -> bool:
        return os.access(directory, os.W_OK)

    return check


def timed(store: St) -> St:
    """`store` with every coroutine method's latency in `chat_store_seconds`."""
    return cast(St, _TimedStore(store))


class _TimedStore:
    """A transparent proxy; each method's wrapper is built once, on first use."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not inspect.iscoroutinefunction(attr):
            return attr
        histogram = STORE_SECONDS.labels(name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await attr(*args, **kwargs)
            finally:
                histogram.observe(time.perf_counter() - started)

        setattr(self, name, call)
        return call


def start_tracing(settings: BaseSettings, name: str) -> Callable[[], None]:
    """Span export when CHAT_OTEL_ENDPOINT asks for it; the flush to call at exit.

    Without the SDK installed, the setting stops the process at start (exit status 2).
    """
    if not settings.otel_endpoint:
        return lambda: None
    from chat_runtime import otel

    try:
        provider = otel.setup(settings.otel_endpoint, name)
    except otel.OtelMissing as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return cast(Callable[[], None], provider.shutdown)


def main(name: str, kind: type[S], build: Build[S], *, rooms: bool = True) -> None:
    """Entry point of `python -m chat_<service>` (`rooms`: see `serve`).

    A MongoDB that cannot serve the stores (standalone, unreachable) stops the process
    at start with a one-line message and exit status 2, like a bad setting.
    """
    settings = exit_on_error(lambda: load_settings(kind))
    setup_logging(settings.log_level, settings.log_format, name)

    async def _main() -> None:
        await serve(name, settings, build, rooms=rooms)

    flush = start_tracing(settings, name)
    try:
        run(_main)
    except MongoSetupError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        flush()


__all__ = ["main", "serve"]
