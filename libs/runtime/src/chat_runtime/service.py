"""`__main__` plumbing shared by every worker service: settings → connect → serve → drain."""

from __future__ import annotations

import asyncio
import io
import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Protocol, TypeVar

from chat_runtime.bus import Bus
from chat_runtime.logs import LIFECYCLE, setup_logging
from chat_runtime.mongo import MongoSetupError, require_replica_set
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


async def serve(name: str, settings: S, build: Build[S]) -> None:
    """Connect to NATS, serve the router until SIGTERM/SIGINT, then drain and close."""
    bus = await Bus.connect(settings.nats_url, name=name, randomize=settings.nats_randomize)
    # Before serving: the first command may publish into a room someone just joined.
    await bus.track_joins(name)
    async with build(settings, bus) as router:
        worker = Worker(bus, router, settings.max_in_flight)
        await worker.start()
        log.info("%s ready: %s", name, ", ".join(router.actions))
        await wait_for_shutdown()
        log.info("%s draining", name)
        asyncio.get_running_loop().call_later(STUCK_DRAIN_S, log_waiting_tasks, name)
        await worker.stop()
    await bus.close()
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
    store = (
        mongo(settings.mongodb_url, settings.mongodb_db)
        if settings.store == "mongo"
        else sqlite(Path(settings.sqlite_dir) / file_name)
    )
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def main(name: str, kind: type[S], build: Build[S]) -> None:
    """Entry point of `python -m chat_<service>`.

    A MongoDB that cannot serve the stores (standalone, unreachable) stops the process
    at start with a one-line message and exit status 2, like a bad setting.
    """
    settings = exit_on_error(lambda: load_settings(kind))
    setup_logging(settings.log_level)

    async def _main() -> None:
        await serve(name, settings, build)

    try:
        run(_main)
    except MongoSetupError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


__all__ = ["main", "serve"]
