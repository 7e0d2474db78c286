"""The durable push stream (JetStream) and a pull consumer that survives server restarts.

`ensure_push_stream` is called by every process that publishes into the stream (the
messages service; calls publishes call pushes) and by the consumer, so a publish made
before the notifications worker ever ran is kept.

`PullConsumer` re-creates its pull subscription whenever the connection reconnects or a
fetch fails with anything but an idle timeout: nats-py pull subscriptions may stop
receiving after a nats-server restart (their inbox interest and the server-side pull
requests are gone), which would leave a worker alive and idle for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import api
from nats.js.errors import BadRequestError, NoStreamResponseError, NotFoundError

from chat_contracts import subjects
from chat_runtime.bus import Bus

log = logging.getLogger(__name__)

#: Pushes older than this are dropped unsent (a phone off for a day gets the app's sync).
PUSH_MAX_AGE_S = 24 * 3_600.0
#: A stream write repeated with the same `Nats-Msg-Id` within this is stored once (a
#: publish retried after a lost PubAck). Publishers send one id per 20 ms batch, so the
#: server tracks ~6,000 ids at 50 batches/s.
PUSH_DUPLICATE_WINDOW_S = 120.0
#: How long one publish waits for its PubAck before it is sent again (same id).
PUBLISH_ACK_TIMEOUT_S = 2.0
#: Waits between attempts while the stream cannot take a write (server restarting).
PUBLISH_RETRY_S = (0.05, 0.1, 0.25, 0.5, 1.0)


async def ensure_push_stream(bus: Bus, storage: str = "file") -> None:
    """Create the `PUSH` stream if it does not exist (idempotent, any process may call it).

    `storage` is `CHAT_PUSH_STREAM_STORAGE`: `file` (default) keeps pending pushes across
    a nats-server restart, `memory` does not. With the publishers' 20 ms batches neither
    costs CPU per message beyond the bench's run-to-run noise (chat_messages.push).
    """
    js = bus.nc.jetstream()
    config = api.StreamConfig(
        name=subjects.PUSH_STREAM,
        subjects=[subjects.MESSAGE_PUSH, subjects.CALL_PUSH],
        retention=api.RetentionPolicy.WORK_QUEUE,
        storage=api.StorageType.MEMORY if storage == "memory" else api.StorageType.FILE,
        max_age=PUSH_MAX_AGE_S,
        duplicate_window=PUSH_DUPLICATE_WINDOW_S,
    )
    try:
        await js.add_stream(config)
    except BadRequestError:
        # Exists with another configuration (an older deployment): keep it as it is.
        log.info("stream %s exists; left as configured", subjects.PUSH_STREAM)


async def publish_durably(
    bus: Bus,
    subject: str,
    data: bytes,
    msg_id: str,
    *,
    storage: str = "file",
    give_up_after_s: float | None = None,
) -> bool:
    """Write `data` into the push stream and wait for the stream's PubAck; retry (same
    `Nats-Msg-Id`, so a write whose ack was lost is stored once) until it is stored or
    `give_up_after_s` has passed. True when stored.

    A plain publish is lost without a word when nats-server dies with it unread or
    restarts while the client reconnects; only the PubAck says the stream stored it.
    """
    js = bus.nc.jetstream()
    loop = asyncio.get_running_loop()
    deadline = None if give_up_after_s is None else loop.time() + give_up_after_s
    attempt = 0
    while True:
        try:
            await js.publish(
                subject,
                data,
                timeout=PUBLISH_ACK_TIMEOUT_S,
                stream=subjects.PUSH_STREAM,
                # A fresh dict each time: `publish` adds its own header to it.
                headers={api.Header.MSG_ID.value: msg_id},
            )
            return True
        except NoStreamResponseError:
            # No stream took it: a memory stream lost in a server restart, or JetStream
            # not up yet. Make it again (idempotent) before the next attempt.
            with contextlib.suppress(NatsError, OSError):
                await ensure_push_stream(bus, storage)
        except (NatsError, OSError) as exc:
            log.warning("push stream write failed (%s); retrying", exc or type(exc).__name__)
        wait = PUBLISH_RETRY_S[min(attempt, len(PUBLISH_RETRY_S) - 1)]
        attempt += 1
        if deadline is not None and loop.time() + wait > deadline:
            log.error("push stream write %s given up after %s attempts", msg_id, attempt)
            return False
        await asyncio.sleep(wait)


Handle = Callable[[Msg], Awaitable[None]]


class PullConsumer:
    """A durable pull consumer on a stream (the push stream unless `stream` names
    another, which `ensure` then creates), fed to `handle` one message at a time (which
    acks, naks or terms it)."""

    def __init__(
        self,
        bus: Bus,
        durable: str,
        handle: Handle,
        *,
        storage: str = "file",
        batch: int = 16,
        ack_wait_s: float = 60.0,
        max_deliver: int = 50,
        stream: str = subjects.PUSH_STREAM,
        ensure: Callable[[Bus], Awaitable[None]] | None = None,
    ) -> None:
        self._stream = stream
        self._ensure = ensure
        self._bus = bus
        self._durable = durable
        self._handle = handle
        self._batch = batch
        self._ack_wait_s = ack_wait_s
        self._max_deliver = max_deliver
        self._storage = storage
        #: How many pull subscriptions were made (one more after each reconnect).
        self.subscriptions_made = 0

    def _reconnects(self) -> int:
        reconnects: int = self._bus.nc.stats["reconnects"]
        return reconnects

    async def _subscribe(self) -> object:
        if self._ensure is not None:
            await self._ensure(self._bus)
        else:
            await ensure_push_stream(self._bus, self._storage)
        js = self._bus.nc.jetstream()
        config = api.ConsumerConfig(
            durable_name=self._durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self._ack_wait_s,
            max_deliver=self._max_deliver,
        )
        try:
            await js.consumer_info(self._stream, self._durable)
        except NotFoundError:
            await js.add_consumer(self._stream, config=config)
        sub = await js.pull_subscribe_bind(self._durable, self._stream)
        self.subscriptions_made += 1
        return sub

    async def run(self) -> None:
        """Fetch and handle until cancelled; reconnects and server restarts included."""
        while True:
            seen = self._reconnects()
            sub: object | None = None
            try:
                sub = await self._subscribe()
                while seen == self._reconnects():
                    try:
                        msgs = await sub.fetch(self._batch, timeout=1.0)  # type: ignore[attr-defined]
                    except (TimeoutError, NatsTimeoutError):
                        continue  # idle: nothing to deliver
                    for msg in msgs:
                        await self._handle(msg)
                await _unsubscribe(sub)
            except asyncio.CancelledError:
                # Shutting down: a pull subscription left behind keeps `nc.drain()`
                # waiting for its fetch inbox until the drain timeout (30 s).
                if sub is not None:
                    await _unsubscribe(sub)
                raise
            except (NatsError, OSError) as exc:
                log.warning(
                    "%s consumer: %s; re-subscribing", self._stream, exc or type(exc).__name__
                )
                await asyncio.sleep(0.5)


async def _unsubscribe(sub: object) -> None:
    try:
        await sub.unsubscribe()  # type: ignore[attr-defined]
    except (NatsError, OSError) as exc:
        log.debug("unsubscribe after reconnect: %s", exc)
