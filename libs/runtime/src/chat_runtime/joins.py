"""Who joined which room in the last few seconds, as every publishing worker knows it.

Why: a gateway subscribes to `rt.room.<id>` when it learns (on the user's own subject)
that a local user joined. On one server that subscription races the next room event
only against the gateway's own delay; in a cluster the SUB must also cross a route to
the node of whoever publishes next, and NATS drops what a node publishes before the
interest arrives. `flush()` only round-trips to the gateway's own node, so nothing a
gateway can do makes its new interest known cluster-wide in time. Measured on a 3-node
cluster on loopback (tests/integration/test_cluster.py): 1 of 100 new members missed
the very next room message, with no load beyond the test itself.

So for `RECENT_JOIN_S` after a join, a room event is also copied to the new members'
own subjects (`rt.user.<id>`, or `rt.users` for several), which their gateways have
been subscribed to since the socket connected; gateways deliver each such event once
per socket, from whichever copy comes first (`Fanout.once_id`). Every worker hears
every join on `evt.<domain>.joins` (published by the service that made it, before its
reply), so the worker that publishes the next event knows, whichever replica it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

#: How long after a join room events are also copied to the new member (s). Covers a
#: gateway that takes this long to process the join (its event loop stalled) plus the
#: route round trip (microseconds on a LAN); after it, the room subscription exists on
#: every node. The cost is one extra publish per room event in this window.
RECENT_JOIN_S = 5.0


class RecentJoins:
    """room id -> user id -> when the join was heard (monotonic s); old entries pruned."""

    def __init__(
        self, window_s: float = RECENT_JOIN_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._window = window_s
        self._clock = clock
        self._rooms: dict[str, dict[str, float]] = {}
        #: Rooms in the order their newest join was heard, for pruning from the front.
        self._order: dict[str, float] = {}

    def joined(self, users: Iterable[str], rooms: Iterable[str]) -> None:
        """`users` joined `rooms` now."""
        now = self._clock()
        users = list(users)
        for room in rooms:
            self._rooms.setdefault(room, {}).update(dict.fromkeys(users, now))
            self._order.pop(room, None)
            self._order[room] = now
        self._prune(now)

    def left(self, users: Iterable[str], rooms: Iterable[str]) -> None:
        """`users` left `rooms` (no copies for them any more)."""
        for room in rooms:
            members = self._rooms.get(room)
            if members is None:
                continue
            for user in users:
                members.pop(user, None)
            if not members:
                del self._rooms[room]
                self._order.pop(room, None)

    def of(self, room: str) -> list[str]:
        """The users who joined `room` within the window (usually none: one dict miss)."""
        members = self._rooms.get(room)
        if not members:
            return []
        now = self._clock()
        self._prune(now)
        cutoff = now - self._window
        return [user for user, at in members.items() if at > cutoff]

    def __len__(self) -> int:
        return sum(len(members) for members in self._rooms.values())

    def _prune(self, now: float) -> None:
        cutoff = now - self._window
        while self._order:
            room, at = next(iter(self._order.items()))
            if at > cutoff:
                return
            del self._order[room]
            self._rooms.pop(room, None)
