"""Push providers: one per kind of device token, behind one small Protocol.

A provider turns a `Notification` into its service's request and its answer into an
`Outcome`: sent; the token is invalid (the device is removed); retry (429/5xx, with the
service's `Retry-After` when it gives one); or failed for good. Choosing the provider of
a device is `domain.provider_of`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

from chat_users.domain import Device


class Outcome(enum.Enum):
    """What a provider said about one push."""

    SENT = "sent"
    INVALID_TOKEN = "invalid_token"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True)
class Result:
    """A provider's answer; `retry_after_s` from the service when it said when."""

    outcome: Outcome
    retry_after_s: float | None = None
    detail: str = ""


@dataclass(frozen=True)
class Notification:
    """What a push says, independent of the provider."""

    title: str
    body: str
    #: String key/values for the app (chat id, message id, sender...).
    data: dict[str, str] = field(default_factory=dict)
    #: Calls ring at once; messages go at normal priority.
    high_priority: bool = False
    #: Pushes with the same id replace each other on the device (a redelivery shows once).
    collapse_id: str = ""


class Provider(Protocol):
    """One push service."""

    name: str

    async def send(self, device: Device, note: Notification) -> Result:
        """Deliver one push to one device."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
