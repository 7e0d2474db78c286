"""Web Push with VAPID (RFC 8030/8291/8292) through `pywebpush` (encryption by the library).

The device's token is the browser's PushSubscription as JSON (`endpoint`, `keys.p256dh`,
`keys.auth`). Answers: 201/200/202 sent; 404 and 410 → the subscription is gone
(invalid); 429 and 5xx → retry, honouring `Retry-After`. `Topic` (the collapse id,
32 base64url characters at most) makes a redelivered push replace the first one.
"""

from __future__ import annotations

import hashlib
import json
from base64 import urlsafe_b64encode
from datetime import UTC, datetime
from typing import Any

import aiohttp
from py_vapid import Vapid
from pywebpush import WebPushException, webpush_async

from chat_users.domain import Device
from chat_users.push import Notification, Outcome, Result
from chat_users.push.payload import retry_after

#: A push waits up to a day for an offline browser.
TTL_S = 86_400
GONE_STATUSES = frozenset({404, 410})


def topic(collapse_id: str) -> str:
    """A `Topic` header value: at most 32 characters of the URL-safe base64 alphabet."""
    digest = hashlib.sha256(collapse_id.encode()).digest()
    return urlsafe_b64encode(digest).decode().rstrip("=")[:32]


class WebPushProvider:
    """Web Push to browsers' push services, VAPID-signed."""

    name = "webpush"

    def __init__(self, *, private_key: str, subject: str, timeout_s: float = 10.0) -> None:
        # A PEM file path, PEM text, or the raw base64url key `vapid --gen` prints.
        self._vapid = (
            Vapid.from_file(private_key)
            if private_key.endswith(".pem")
            else Vapid.from_string(private_key)
        )
        self._subject = subject
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def send(self, device: Device, note: Notification) -> Result:
        """Encrypt (aes128gcm) and POST to the subscription's endpoint."""
        try:
            subscription: Any = json.loads(device.token)
            subscription["endpoint"], subscription["keys"]["p256dh"], subscription["keys"]["auth"]
        except (ValueError, KeyError, TypeError):
            return Result(Outcome.INVALID_TOKEN, None, "not a PushSubscription")
        if self._session is None:
            self._session = aiohttp.ClientSession()
        data = json.dumps({"title": note.title, "body": note.body, "data": note.data})
        headers: dict[str, str | int | float] = {
            "Urgency": "high" if note.high_priority else "normal",
        }
        if note.collapse_id:
            headers["Topic"] = topic(note.collapse_id)
        try:
            await webpush_async(
                subscription,
                data=data,
                vapid_private_key=self._vapid,
                vapid_claims={"sub": self._subject},
                ttl=TTL_S,
                timeout=self._timeout_s,
                headers=headers,
                aiohttp_session=self._session,
            )
        except WebPushException as exc:
            status = exc.status_code
            asked = retry_after(exc.retry_after, datetime.now(UTC))
            if status in GONE_STATUSES:
                return Result(Outcome.INVALID_TOKEN, None, str(status))
            if status is not None and (status == 429 or status >= 500):
                return Result(Outcome.RETRY, asked, str(status))
            return Result(Outcome.FAILED, None, str(exc)[:200])
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Result(Outcome.RETRY, None, f"push service unreachable: {exc}")
        return Result(Outcome.SENT)

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
