"""The development provider: logs each push instead of sending it."""

from __future__ import annotations

import logging

from chat_users.domain import Device
from chat_users.push import Notification, Outcome, Result

log = logging.getLogger(__name__)


class LogProvider:
    """Stands in for any provider that is not configured."""

    def __init__(self, name: str = "log") -> None:
        self.name = name

    async def send(self, device: Device, note: Notification) -> Result:
        """Log one line and count it as sent."""
        log.info(
            "push (%s) to %s/%s: %s: %s %s",
            self.name,
            device.user_id,
            device.device_id,
            note.title,
            note.body,
            note.data,
        )
        return Result(Outcome.SENT)

    async def close(self) -> None:
        """Nothing to release."""
