"""Presence and status changes to a user's contacts: once per room, blocks applied.

A change is published on each of the user's rooms (its DMs and its groups of at most
`limits.PRESENCE_FANOUT_MAX_GROUP` members) as the same bytes, encoded once, with a
`dedupe_id`: a gateway holding a contact in several of those rooms emits it to that
socket once. NATS traffic grows with the number of rooms, not its square (the message
no longer lists every room). `skip_users` carries the users with a block between them
and the subject, so a blocked user never sees the blocker's presence or status.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

import msgspec

from chat_contracts import subjects
from chat_contracts.bus import Fanout, Frame
from chat_runtime.bus import Bus, encode, encode_json
from chat_users.directory import ChatDirectory


class Announcer:
    """Publishes a user's changes to its contacts and its own sockets."""

    def __init__(self, bus: Bus, directory: ChatDirectory, max_group: int) -> None:
        self._bus = bus
        self._directory = directory
        self._max_group = max_group

    async def to_contacts(
        self,
        user_id: str,
        events: Sequence[tuple[str, msgspec.Struct]],
        *,
        hidden: Iterable[str],
        rooms: Iterable[str] | None = None,
    ) -> int:
        """Publish `events` (in order) to every contact; `rooms` None = ask for them.

        Returns the number of rooms published on.
        """
        if not events:
            return 0
        chats = await self._directory.chats_of(user_id) if rooms is None else list(rooms)
        targets = await self._directory.fanout_rooms(user_id, chats, self._max_group)
        if not targets:
            return 0
        frames = [Frame(event, encode_json(payload)) for event, payload in events]
        body = encode(
            Fanout(
                event=frames[0].event,
                data=frames[0].data,
                more=frames[1:],
                dedupe_id=uuid.uuid4().hex,
                skip_user=user_id,
                skip_users=sorted(set(hidden)),
            )
        )
        for room in targets:
            await self._bus.publish(subjects.room(room), body)
        return len(targets)

    async def to_self(
        self, user_id: str, event: str, payload: msgspec.Struct, *, skip_sid: str | None
    ) -> None:
        """The user's own sockets (all but `skip_sid`, which has the ack)."""
        body = encode(Fanout(event=event, data=encode_json(payload), skip_sid=skip_sid))
        await self._bus.publish(subjects.user(user_id), body)
