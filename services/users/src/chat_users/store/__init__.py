"""User repository: the Protocol the handlers use; `sqlite.py` and `mongo.py` implement it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from chat_users.domain import CustomStatus, Device, Profile, Sighting


class UserStore(Protocol):
    """What the user handlers, the sweepers and the notifications worker need from storage."""

    async def open(self) -> None:
        """Connect and create the schema or indexes (idempotent)."""
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...

    # --- profiles and last seen

    async def record(self, seen: Sighting) -> None:
        """Create or refresh a profile; last seen never moves backwards."""
        ...

    async def profile(self, user_id: str) -> Profile | None:
        """One stored profile."""
        ...

    async def last_seen(self, user_ids: Sequence[str]) -> dict[str, datetime]:
        """Last seen of those of `user_ids` that have one."""
        ...

    # --- blocks

    async def block(self, blocker_id: str, blocked_id: str, at: datetime) -> bool:
        """Store the block; False when it was already there."""
        ...

    async def unblock(self, blocker_id: str, blocked_id: str) -> bool:
        """Drop the block; False when there was none."""
        ...

    async def blockers(self, user_id: str, other_id: str) -> list[str]:
        """Who of the two has blocked the other (0, 1 or 2 ids)."""
        ...

    async def hidden(self, user_id: str) -> list[str]:
        """Every user `user_id` blocks or is blocked by."""
        ...

    # --- custom status

    async def set_status(self, user_id: str, status: CustomStatus | None) -> None:
        """Store (or with None clear) the user's custom status."""
        ...

    async def statuses(self, user_ids: Sequence[str]) -> dict[str, CustomStatus]:
        """The stored statuses of those of `user_ids` that have one (expired included)."""
        ...

    async def expired_statuses(self, now: datetime, limit: int) -> list[CustomStatus]:
        """Up to `limit` statuses whose `expires_at` is at or before `now`."""
        ...

    async def clear_expired(self, status: CustomStatus) -> bool:
        """Clear `status` if it is still the stored one; True for the one caller that did
        (several sweepers may race for it; only the winner announces)."""
        ...

    # --- push devices

    async def register_device(self, device: Device, keep: int) -> list[Device]:
        """Add or replace the device (by user and device id); drop the oldest past
        `keep`; the dropped ones."""
        ...

    async def unregister_device(self, user_id: str, device_id: str) -> bool:
        """Forget one device; False when it was unknown."""
        ...

    async def devices(self, user_id: str) -> list[Device]:
        """The user's devices, oldest first."""
        ...

    async def remove_token(self, user_id: str, device_id: str, token: str) -> bool:
        """Forget the device only if it still has `token` (a provider said it is invalid)."""
        ...

    # --- push delivery records (dedupe by message id + device)

    async def push_states(self, message_id: str) -> dict[tuple[str, str], str]:
        """`(user id, device id) -> state` of every push recorded for a message."""
        ...

    async def set_push_state(
        self, message_id: str, user_id: str, device_id: str, state: str, at: datetime
    ) -> None:
        """Record the state of one push (`sending`, `sent`, `dropped`)."""
        ...

    async def forget_pushes(self, before: datetime) -> int:
        """Drop push records older than `before` (past the stream's redelivery horizon)."""
        ...
