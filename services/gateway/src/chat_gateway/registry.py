"""Which local sockets belong to which users and rooms: the gateway's only state.

Pure bookkeeping, no I/O. Every mutation returns the NATS interest it changes, so the
caller subscribes to `rt.user.<id>` / `rt.room.<id>` exactly while a local socket needs
it (ARCHITECTURE.md, interest-based fan-out) and never to a wildcard.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from chat_contracts import subjects
from chat_contracts.bus import Actor
from chat_gateway.conn import Connection


@dataclass(slots=True)
class LocalSocket:
    """One connected Socket.IO client on this gateway."""

    sid: str
    conn: Connection
    actor: Actor
    rooms: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Interest:
    """Subjects to subscribe to and to drop after a change."""

    subscribe: list[str] = field(default_factory=list)
    unsubscribe: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.subscribe or self.unsubscribe)


class Registry:
    """Local sockets indexed by sid, user and room."""

    def __init__(self) -> None:
        self.sockets: dict[str, LocalSocket] = {}
        #: user id -> sid -> connection of that user's local sockets.
        self.by_user: dict[str, dict[str, Connection]] = {}
        #: room id -> sid -> connection: the fan-out set of the room on this gateway.
        self.by_room: dict[str, dict[str, Connection]] = {}
        #: Rooms each user is in, kept while any of the user's sockets is here.
        self.user_rooms: dict[str, set[str]] = {}

    def add_socket(self, conn: Connection, actor: Actor) -> Interest:
        """A socket connected; the first one of its user brings `rt.user.<id>`."""
        self.sockets[conn.sid] = LocalSocket(conn.sid, conn, actor)
        conns = self.by_user.setdefault(actor.user_id, {})
        conns[conn.sid] = conn
        interest = Interest()
        if len(conns) == 1:
            interest.subscribe.append(subjects.user(actor.user_id))
        return interest

    def remove_socket(self, sid: str) -> tuple[LocalSocket | None, Interest]:
        """A socket left: it leaves its rooms; the last one of its user drops `rt.user.<id>`."""
        sock = self.sockets.pop(sid, None)
        interest = Interest()
        if sock is None:
            return None, interest
        for room in list(sock.rooms):
            self._leave_one(sock, room, interest)
        conns = self.by_user.get(sock.actor.user_id)
        if conns is not None:
            conns.pop(sid, None)
            if not conns:
                del self.by_user[sock.actor.user_id]
                self.user_rooms.pop(sock.actor.user_id, None)
                interest.unsubscribe.append(subjects.user(sock.actor.user_id))
        return sock, interest

    def join_user(self, user_id: str, rooms: Iterable[str]) -> Interest:
        """Every local socket of `user_id` enters `rooms` (membership granted)."""
        interest = Interest()
        rooms = list(rooms)
        if user_id in self.by_user:
            self.user_rooms.setdefault(user_id, set()).update(rooms)
        for sid in self.by_user.get(user_id, ()):
            sock = self.sockets[sid]
            for room in rooms:
                self._join_one(sock, room, interest)
        return interest

    def leave_user(self, user_id: str, rooms: Iterable[str]) -> Interest:
        """Every local socket of `user_id` leaves `rooms` (membership revoked)."""
        interest = Interest()
        rooms = list(rooms)
        if user_id in self.user_rooms:
            self.user_rooms[user_id].difference_update(rooms)
        for sid in self.by_user.get(user_id, ()):
            sock = self.sockets[sid]
            for room in rooms:
                self._leave_one(sock, room, interest)
        return interest

    def close_room(self, room: str) -> Interest:
        """The room is gone: every local socket leaves it."""
        interest = Interest()
        for sid in list(self.by_room.get(room, ())):
            sock = self.sockets[sid]
            self.user_rooms.get(sock.actor.user_id, set()).discard(room)
            self._leave_one(sock, room, interest)
        return interest

    def in_room(self, user_id: str, room: str) -> bool:
        """Whether `user_id` (with a socket here) is a member of `room`."""
        return room in self.user_rooms.get(user_id, ())

    def rooms_of(self, user_id: str) -> set[str]:
        """The rooms of a user with a socket here."""
        return set(self.user_rooms.get(user_id, ()))

    def _join_one(self, sock: LocalSocket, room: str, interest: Interest) -> None:
        if room in sock.rooms:
            return
        sock.rooms.add(room)
        members = self.by_room.setdefault(room, {})
        members[sock.sid] = sock.conn
        if len(members) == 1:
            interest.subscribe.append(subjects.room(room))

    def _leave_one(self, sock: LocalSocket, room: str, interest: Interest) -> None:
        if room not in sock.rooms:
            return
        sock.rooms.discard(room)
        members = self.by_room.get(room)
        if members is None:
            return
        members.pop(sock.sid, None)
        if not members:
            del self.by_room[room]
            interest.unsubscribe.append(subjects.room(room))
