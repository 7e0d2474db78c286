"""The worker runner: one queue-group subscription per domain, one handler per command.

A handler is `async (Command[P]) -> R`: it decodes nothing and encodes nothing itself.
The runner decodes the command with the decoder built for `P` at registration, maps
`DomainError` / `RetryableError` / `msgspec.ValidationError` to error and retry
replies, and answers every request exactly once. A command's MongoDB work is bounded
below the gateway's ack deadline, and a transient MongoDB failure (failover, lost
connection, aborted transaction) is answered `retry`/UNAVAILABLE (`chat_runtime.mongo`).

Client commands are registered from the routes table (`Router.route`), which ties the
handler's payload and result types to the row; internal queries between services
(`cmd.groups.membership`...) through `Router.internal`. `Router.check` (run by
`Worker.start`) refuses a router that lacks a served route of its domain or handles an
unserved one, so the table and the workers cannot drift apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec
from nats.aio.msg import Msg

from chat_contracts import DomainError, ErrorCode, RetryableError, subjects
from chat_contracts.bus import Command, CommandBatch, Reply, ReplyBatch
from chat_contracts.client import Payload
from chat_contracts.routes import ROUTES, Route
from chat_contracts.server import Empty
from chat_runtime import memory, trace
from chat_runtime.bus import Bus, encode
from chat_runtime.metrics import COMMAND_SECONDS, COMMANDS, IN_FLIGHT
from chat_runtime.mongo import command_deadline, unavailable
from chat_runtime.redis_client import redis_unavailable

log = logging.getLogger(__name__)

#: How long a stopping worker waits for the commands under way (s): past the gateway's
#: 5 s ack deadline their callers were told `retry` already, and a process manager's
#: grace period (10 s in the tests, 30 s in Kubernetes) must not run out first.
DRAIN_S = 6.0

P = TypeVar("P")
#: A client payload (the routes table's `P`) and the ack result it gets.
CP = TypeVar("CP", bound=Payload)
R = TypeVar("R")
#: What the runner calls: the typing is checked where it is registered.
Handler = Callable[[Command[Any]], Awaitable[Any]]

_EMPTY_RESULT = encode({})
_batch_decoder = msgspec.msgpack.Decoder(CommandBatch)


@dataclass(frozen=True)
class _Entry(Generic[P]):
    decoder: msgspec.msgpack.Decoder[Command[P]]
    handler: Handler


def error_reply(exc: DomainError) -> Reply:
    """The reply for a refusal decided by a rule or a store."""
    return Reply(status="error", code=exc.code.value, error=exc.message, field=exc.field)


def retry_reply(exc: RetryableError) -> Reply:
    """The reply for a transient refusal: the client may send the command again later."""
    return Reply(
        status="retry", code=exc.code.value, error=exc.message, retry_after=exc.retry_after_ms
    )


def validation_reply(exc: msgspec.ValidationError) -> Reply:
    """The reply for a payload that does not match its contract."""
    text = str(exc)
    field = text.rsplit("at `$.", 1)[1].rstrip("`") if "at `$." in text else None
    return Reply(status="error", code=ErrorCode.VALIDATION_ERROR.value, error=text, field=field)


class RouterError(ValueError):
    """A router that does not match the routes table; the worker must not start."""


class Router:
    """The command table of one domain."""

    def __init__(self, domain: str, routes: Sequence[Route[Any, Any]] = ROUTES) -> None:
        self.domain = domain
        self._entries: dict[str, _Entry[Any]] = {}
        #: This domain's rows of the client table, by action.
        self._routes = {r.action: r for r in routes if r.domain == domain}

    def route(
        self, route: Route[CP, R], handler: Callable[[Command[CP]], Awaitable[R | Empty]]
    ) -> None:
        """Serve a client event's route: the handler takes its payload, returns its result.

        `Empty` is always allowed: an ack with no result fields (the generated
        TypeScript declares every ack result `Partial<...>`).
        """
        if self._routes.get(route.action) is not route:
            raise RouterError(f"{route.event} is not a route of domain {self.domain}")
        self._register(route.action, route.payload, handler)

    def internal(
        self,
        action: str,
        payload: type[P],
        handler: Callable[[Command[P]], Awaitable[msgspec.Struct | None]],
    ) -> None:
        """Serve a query or notice between services (`cmd.<domain>.<action>`), no client
        event: `cmd.groups.membership`, `cmd.messages.mine`..."""
        if action in self._routes:
            raise RouterError(f"{self.domain}.{action} is a client route: register it with route()")
        self._register(action, payload, handler)

    def _register(self, action: str, payload: type[Any], handler: Handler) -> None:
        subjects.command(self.domain, action)  # refuses a name outside the alphabet
        if action == subjects.BATCH_ACTION:
            raise RouterError(f"{self.domain}.{action}: the action name is reserved for batches")
        if action in self._entries:
            raise RouterError(f"{self.domain}.{action} registered twice")
        decoder: msgspec.msgpack.Decoder[Command[Any]] = msgspec.msgpack.Decoder(
            Command[payload]  # type: ignore[valid-type]
        )
        self._entries[action] = _Entry(decoder, handler)

    def check(self) -> None:
        """Raise `RouterError` unless this router serves exactly its domain's served routes."""
        rows = self._routes.values()
        missing = [r.event for r in rows if r.served and r.action not in self._entries]
        early = [r.event for r in rows if not r.served and r.action in self._entries]
        problems: list[str] = []
        if missing:
            problems.append(f"no handler for served route(s) {', '.join(missing)}")
        if early:
            problems.append(
                f"handler(s) for route(s) marked served=False: {', '.join(early)} "
                "(set served=True in chat_contracts.routes)"
            )
        if problems:
            raise RouterError(f"{self.domain} worker: " + "; ".join(problems))

    @property
    def actions(self) -> list[str]:
        """The registered actions."""
        return sorted(self._entries)

    async def dispatch(self, action: str, data: bytes) -> Reply:
        """Run one command and build its reply; never raises."""
        entry = self._entries.get(action)
        if entry is None:
            # Not served by this worker (an older worker behind a newer gateway): a
            # retry would get the same answer.
            return Reply(
                status="error",
                code=ErrorCode.NOT_IMPLEMENTED.value,
                error=f"unknown command {self.domain}.{action}",
            )
        try:
            command = entry.decoder.decode(data)
            trace.user.set(command.actor.user_id)
            with command_deadline():
                result = await entry.handler(command)
        except msgspec.ValidationError as exc:
            return validation_reply(exc)
        except DomainError as exc:
            return error_reply(exc)
        except RetryableError as exc:
            return retry_reply(exc)
        except Exception as exc:
            transient = unavailable(exc) or redis_unavailable(exc)
            if transient is not None:
                log.warning("%s.%s: %r; answered retry", self.domain, action, exc)
                return retry_reply(transient)
            log.exception("%s.%s failed", self.domain, action)
            return Reply(status="error", code=ErrorCode.INTERNAL.value, error="internal error")
        raw = _EMPTY_RESULT if result is None else encode(result)
        return Reply(status="ok", result=raw)

    async def dispatch_batch(self, data: bytes) -> ReplyBatch:
        """Run the commands of a `CommandBatch`; never raises.

        The items of one socket (`origin_sid`) run one after the other in item order; the
        others start at once, so that their store writes are queued in the same loop turn
        and commit together (one transaction per batch, `chat_runtime.sqlite`).
        """
        try:
            batch = _batch_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("%s: unreadable command batch: %s", self.domain, exc)
            return ReplyBatch(replies=[])
        replies: list[Reply | None] = [None] * len(batch.items)
        last: dict[str, asyncio.Task[None]] = {}

        async def run(index: int, before: asyncio.Task[None] | None) -> None:
            if before is not None:
                await asyncio.wait([before])
            item = batch.items[index]
            replies[index] = await self.dispatch(item.action, bytes(item.command))

        tasks: list[asyncio.Task[None]] = []
        for index, item in enumerate(batch.items):
            previous = last.get(item.origin_sid) if item.origin_sid is not None else None
            task = asyncio.ensure_future(run(index, previous))
            if item.origin_sid is not None:
                last[item.origin_sid] = task
            tasks.append(task)
        await asyncio.gather(*tasks)
        return ReplyBatch(replies=[r for r in replies if r is not None])


class Worker:
    """Serves a `Router` on `cmd.<domain>.*` in the domain's queue group."""

    def __init__(self, bus: Bus, router: Router, max_in_flight: int = 64) -> None:
        self._bus = bus
        self._router = router
        self._prefix_len = len(subjects.command_prefix(router.domain))
        # Commands run concurrently (a store call waits on I/O) but bounded, so that a
        # burst queues in NATS rather than in this process's memory.
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscriptions: list[Any] = []
        self._in_flight = IN_FLIGHT.labels(router.domain)
        #: (subject, outcome) -> its counter child, and subject -> latency child.
        self._counted: dict[tuple[str, str], Any] = {}
        self._timed: dict[str, Any] = {}

    async def start(self) -> None:
        """Check the router against the routes table, subscribe; commands are served
        from now on. Raises `RouterError` when the router and the table disagree."""
        self._router.check()
        subject = subjects.commands_of(self._router.domain)
        sub = await self._bus.subscribe(subject, self._on_message, queue=self._router.domain)
        self._subscriptions.append(sub)
        await self._bus.flush()

    async def _on_message(self, msg: Msg) -> None:
        # Every delivered command becomes a task at once; the task waits for a slot.
        # (Waiting for the slot here left commands in the subscription's queue, where
        # `unsubscribe` at shutdown dropped them unanswered: 40 sends behind a held
        # lock with 4 in flight, some answered only by the gateway's deadline;
        # tests/integration/test_drain.py.) Either way they wait in this process.
        task = asyncio.get_running_loop().create_task(self._serve(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, msg: Msg) -> None:
        # The gateway's trace continues here (and on every message this command causes,
        # the reply included); each command is its own task, so its own context.
        traced = trace.begin(msg.headers, msg.subject)
        started = time.perf_counter()
        outcome = "error"
        try:
            async with self._slots:
                self._in_flight.inc()
                try:
                    action = msg.subject[self._prefix_len :]
                    if action == subjects.BATCH_ACTION:
                        body = encode(await self._router.dispatch_batch(msg.data))
                        outcome = "batch"
                    else:
                        reply = await self._router.dispatch(action, msg.data)
                        outcome = reply.status
                        body = encode(reply)
                    if msg.reply:
                        await self._bus.publish(msg.reply, body)
                finally:
                    self._in_flight.dec()
        finally:
            self._observe(msg.subject, outcome, time.perf_counter() - started)
            trace.end(traced)

    def _observe(self, subject: str, outcome: str, seconds: float) -> None:
        counted = self._counted.get((subject, outcome))
        if counted is None:
            counted = self._counted[subject, outcome] = COMMANDS.labels(subject, outcome)
        timed = self._timed.get(subject)
        if timed is None:
            timed = self._timed[subject] = COMMAND_SECONDS.labels(subject)
        counted.inc()
        timed.observe(seconds)
        log.debug("%s %s in %.2f ms", subject, outcome, seconds * 1000)

    async def stop(self) -> None:
        """Stop taking commands, answer every one taken (running or waiting for a
        slot) within `DRAIN_S`."""
        for sub in self._subscriptions:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=DRAIN_S)
            for task in pending:
                # Whatever holds a command this long has no deadline: say where it waits.
                log.warning("a command still runs at shutdown: %s", task.get_stack(limit=5))


#: A cancelled background task still running after this is cancelled again (s).
RECANCEL_S = 0.1


async def cancel_tasks(tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Cancel background `tasks` and wait until every one has ended.

    A task still running RECANCEL_S later is cancelled again: Python 3.11's
    `asyncio.wait_for` (redis-py wraps each socket write in one when `socket_timeout` is
    set) can return the awaited result and drop a cancellation that arrives just as it
    completes (bpo-42130, fixed in 3.12), after which a sweep loop runs on until SIGKILL.
    """
    pending = set(tasks)
    for task in pending:
        task.cancel()
    while pending:
        done, pending = await asyncio.wait(pending, timeout=RECANCEL_S)
        for task in pending:
            log.warning("a background task outlived its cancellation; cancelled again")
            task.cancel()
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.error("background task failed at shutdown", exc_info=task.exception())


async def wait_for_shutdown() -> None:
    """Return on SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a service's async main on uvloop where it is installed.

    Everything imported so far is moved out of the garbage collector's view
    (`gc.freeze`), and young-generation collections run every 50,000 allocations
    instead of 700: a service allocates a few hundred short-lived objects per message
    and frees them by reference counting, so frequent gen-0 passes were pure overhead.
    glibc's mmap threshold is pinned (`memory.fix_mmap_threshold`: freed large buffers
    go back to the system instead of piling up as heap slack).
    """
    memory.fix_mmap_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
