"""Call records: the repository Protocol the handlers use (SQLite and MongoDB below)."""

from __future__ import annotations

from typing import Protocol

from chat_contracts.server import CallRecord


class CallStore(Protocol):
    """What the call handlers need from storage: one record per call, and history."""

    async def open(self) -> None:
        """Connect and create the schema or indexes (idempotent)."""
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...

    async def save(self, record: CallRecord) -> None:
        """Store (or replace: idempotent per `call_id`) the record of a call."""
        ...

    async def history(
        self, user_id: str, before: str | None, limit: int
    ) -> tuple[list[CallRecord], bool]:
        """`user_id`'s calls (as caller or callee) newest first, ids below `before`;
        (at most `limit` records, whether more exist). A callee does not see offers
        refused as `blocked` (the blocked caller's attempts are not the callee's calls).
        """
        ...
