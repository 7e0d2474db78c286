"""Deadlines of connected and not-yet-connected sessions, swept once a second.

- A socket whose token has expired is told to re-authenticate and closed (the token
  was only checked at the handshake).
- A python-engineio session (long-polling) that has not completed its Socket.IO
  CONNECT within the connect deadline is closed; `lean.LeanServer.sweep` does the same
  for the lean path's connections.
- The per-address handshake buckets forget addresses that have refilled.

One heap entry per connected socket and one pass a second: no timer per socket.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable
from typing import Any, Final

import msgspec

from chat_contracts import ErrorCode
from chat_gateway.conn import OutFrame
from chat_gateway.registry import Registry

log = logging.getLogger(__name__)

#: What the client's `connect_error` carries when its token expires: the handshake's
#: "unauthorized" answer (one client handler: fetch a new token, connect again).
EXPIRED: Final = OutFrame(
    "4"
    + msgspec.json.encode(
        {
            "message": "unauthorized",
            "data": {"code": ErrorCode.UNAUTHORIZED.value, "reason": "token expired"},
        }
    ).decode()
)


#: Gone entries tolerated in the expiry heap beyond the live ones before a rebuild (a
#: rebuild is O(live); this keeps a gateway with few sockets from rebuilding per leave).
COMPACT_SLACK: Final = 1024


class Sessions:
    """Token expiry of connected sockets; the connect deadline of Engine.IO sessions."""

    def __init__(
        self,
        registry: Registry,
        eio_server: Any,
        connect_timeout_ms: int,
        spawn: Callable[[Any], None],
    ) -> None:
        self._registry = registry
        self._eio = eio_server
        self._connect_timeout = connect_timeout_ms / 1000
        self._spawn = spawn
        #: (expires_at, sid) of every connected socket, and of sockets gone since (skipped
        #: when they come up; `left` compacts the heap before they outnumber the live).
        self._expiries: list[tuple[float, str]] = []
        #: sid -> expires_at of the sockets connected now.
        self._live: dict[str, float] = {}
        #: Engine.IO sessions through their Socket.IO CONNECT, and when the sweep first
        #: saw each of the others.
        self._authenticated: set[str] = set()
        self._pending_since: dict[str, float] = {}

    def connected(self, sid: str, expires_at: float) -> None:
        """A socket connected with a token good until `expires_at` (epoch seconds)."""
        self._live[sid] = expires_at
        heapq.heappush(self._expiries, (expires_at, sid))

    def left(self, sid: str) -> None:
        """A socket disconnected: its deadline no longer counts.

        Its heap entry stays until it comes up or the heap is rebuilt: rebuilt once gone
        entries are the majority (plus `COMPACT_SLACK`), so the heap holds at most about
        twice the live sockets however many reconnect. Without it every reconnect kept
        ~170 bytes until its token expired: 10 reconnects/s with day-long tokens is
        864,000 entries, ~140 MiB, per gateway.
        """
        if self._live.pop(sid, None) is None:
            return
        if len(self._expiries) > 2 * len(self._live) + COMPACT_SLACK:
            self._expiries = [(at, sid) for sid, at in self._live.items()]
            heapq.heapify(self._expiries)

    def session_authenticated(self, eio_sid: str) -> None:
        """An Engine.IO session completed its Socket.IO CONNECT."""
        self._authenticated.add(eio_sid)

    def session_left(self, eio_sid: str) -> None:
        """An Engine.IO session's Socket.IO socket disconnected."""
        self._authenticated.discard(eio_sid)

    def expire_tokens(self, now: float) -> None:
        """Disconnect every socket whose token has expired by `now` (epoch seconds)."""
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            at, sid = heapq.heappop(expiries)
            if self._live.get(sid) != at:
                continue  # gone, or connected again with a newer deadline
            del self._live[sid]
            sock = self._registry.sockets.get(sid)
            if sock is None:
                continue
            log.info("token of %s (%s) expired", sock.actor.user_id, sid)
            sock.conn.send(EXPIRED)
            sock.conn.close()

    def drop_unauthenticated(self, now: float) -> None:
        """Close Engine.IO sessions without a Socket.IO CONNECT past the deadline
        (`now` is monotonic seconds)."""
        sessions = self._eio.sockets
        pending = self._pending_since
        for eio_sid in [e for e in pending if e not in sessions or e in self._authenticated]:
            del pending[eio_sid]
        for eio_sid in list(sessions):
            if eio_sid in self._authenticated:
                continue
            since = pending.setdefault(eio_sid, now)
            if now - since > self._connect_timeout:
                log.info("dropping session %s: no Socket.IO connect in time", eio_sid)
                del pending[eio_sid]
                self._spawn(self._eio.disconnect(eio_sid))

    def __len__(self) -> int:
        """Heap entries held (live sockets, and gone ones not yet dropped)."""
        return len(self._expiries)


async def sweep_forever(
    sessions: Sessions, wall_clock: Callable[[], float], prune: Callable[[], None]
) -> None:
    """Once a second: expired tokens, late sessions, then `prune` (handshake buckets)."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(1.0)
        sessions.expire_tokens(wall_clock())
        sessions.drop_unauthenticated(loop.time())
        prune()
