"""A Socket.IO test client: every received event queued, acks awaited with a deadline.

Waiting is always for a named event with a timeout (never sleep-and-hope); absence is
asserted over a short bounded window only after a positive event proved delivery works.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import socketio

DEFAULT_TIMEOUT_S = 5.0


class ChatClient:
    """One socket of one user."""

    def __init__(self, label: str = "") -> None:
        self.label = label
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: dict[str, list[Any]] = defaultdict(list)
        #: Every event in arrival order (`events` is per name and consumed by waits).
        self.received: list[tuple[str, Any]] = []
        self._changed = asyncio.Condition()
        self.sio.on("*", self._on_any)
        self.sio.on("connect_error", self._on_connect_error)

    async def _on_any(self, event: str, data: Any = None) -> None:
        async with self._changed:
            self.events[event].append(data)
            self.received.append((event, data))
            self._changed.notify_all()

    async def _on_connect_error(self, data: Any = None) -> None:
        await self._on_any("connect_error", data)

    async def connect(self, url: str, token: str, **kwargs: Any) -> ChatClient:
        """Connect over WebSocket with `auth.token` (like socket.io-client 4)."""
        await self.sio.connect(
            url,
            auth={"token": token},
            transports=kwargs.pop("transports", ["websocket"]),
            wait_timeout=DEFAULT_TIMEOUT_S,
            **kwargs,
        )
        return self

    @property
    def sid(self) -> str | None:
        """This socket's id."""
        sid: str | None = self.sio.get_sid()
        return sid

    async def call(
        self, event: str, payload: Any = None, timeout: float = DEFAULT_TIMEOUT_S
    ) -> Any:
        """Emit with an ack and return the ack."""
        args = () if payload is None else (payload,)
        return (
            await self.sio.call(event, *args, timeout=timeout)
            if args
            else await self.sio.call(event, timeout=timeout)
        )

    async def emit(self, event: str, payload: Any = None) -> None:
        """Emit without an ack."""
        await self.sio.emit(event, payload)

    async def wait_for(
        self,
        event: str,
        predicate: Callable[[Any], bool] | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> Any:
        """The first received `event` (past or future) that matches; consumed from the log."""
        match = predicate or (lambda _data: True)

        def found() -> int | None:
            for i, data in enumerate(self.events[event]):
                if match(data):
                    return i
            return None

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: found() is not None), timeout)
            except TimeoutError:
                raise AssertionError(
                    f"{self.label}: no {event!r} matching within {timeout} s; "
                    f"got {dict(self.events)}"
                ) from None
            index = found()
            assert index is not None
            return self.events[event].pop(index)

    async def wait_count(
        self, event: str, count: int, timeout: float = DEFAULT_TIMEOUT_S
    ) -> list[Any]:
        """Wait until at least `count` `event`s arrived; return (and consume) them all."""
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: len(self.events[event]) >= count), timeout
                )
            except TimeoutError:
                raise AssertionError(
                    f"{self.label}: {len(self.events[event])} of {count} {event!r} in {timeout} s"
                ) from None
            got, self.events[event] = self.events[event], []
            return got

    async def assert_silent(self, event: str, window: float = 0.5) -> None:
        """No `event` arrives within `window` seconds (use after a positive check)."""
        async with self._changed:
            with_event = lambda: bool(self.events[event])  # noqa: E731
            try:
                await asyncio.wait_for(self._changed.wait_for(with_event), window)
            except TimeoutError:
                return
        raise AssertionError(f"{self.label}: unexpected {event!r}: {self.events[event]}")

    def clear(self) -> None:
        """Forget everything received so far."""
        self.events.clear()

    async def close(self) -> None:
        """Disconnect."""
        if self.sio.connected:
            await self.sio.disconnect()
