"""Apple Push Notification service, token-based (`.p8`) auth, HTTP/2, through `aioapns`.

Answers (APNs `:status` and `reason`): 200 sent; 410 `Unregistered`, 400
`BadDeviceToken` and `DeviceTokenNotForTopic` → the token is invalid; 429
`TooManyRequests`, 500, 503 → retry (APNs sends no `Retry-After`: backoff).

The endpoint is configurable for tests and proxies: `aioapns` 4.x connects to its
protocol class's `APNS_SERVER`/`APNS_PORT`, so a subclass names another host. That is
an internal of `aioapns`, hence the pinned range (>=4.0,<5) and the test
`test_push_providers.py::test_aioapns_internals_we_rely_on` that fails when it changes.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from aioapns import APNs, NotificationRequest, PushType
from aioapns.common import PRIORITY_HIGH, PRIORITY_NORMAL
from aioapns.connection import APNsTLSClientProtocol
from aioapns.exceptions import ConnectionClosed, MaxAttemptsExceeded
from aioapns.exceptions import ConnectionError as ApnsConnectionError

from chat_users.domain import Device
from chat_users.push import Notification, Outcome, Result

INVALID_REASONS = frozenset({"BadDeviceToken", "Unregistered", "DeviceTokenNotForTopic"})
RETRY_STATUSES = frozenset({"429", "500", "503"})


def endpoint_protocol(host: str, port: int) -> type[APNsTLSClientProtocol]:
    """An `aioapns` protocol class that connects to `host:port` instead of Apple's."""
    return type(
        "ApnsEndpointProtocol",
        (APNsTLSClientProtocol,),
        {"APNS_SERVER": host, "APNS_PORT": port},
    )


class ApnsProvider:
    """APNs for iOS devices that registered an APNs device token."""

    name = "apns"

    def __init__(
        self,
        *,
        key_file: str,
        key_id: str,
        team_id: str,
        topic: str,
        sandbox: bool = False,
        endpoint: str = "",
        ca_file: str = "",
    ) -> None:
        context = ssl.create_default_context(cafile=ca_file or None)
        context.set_alpn_protocols(["h2"])
        self._client = APNs(
            key=Path(key_file).read_text(),
            key_id=key_id,
            team_id=team_id,
            topic=topic,
            use_sandbox=sandbox,
            ssl_context=context,
            max_connection_attempts=2,
        )
        if endpoint:
            host, _, port = endpoint.rpartition(":")
            self._client.pool.protocol_class = endpoint_protocol(host, int(port))

    async def send(self, device: Device, note: Notification) -> Result:
        """One POST /3/device/<token> on a shared HTTP/2 connection."""
        aps: dict[str, Any] = {"alert": {"title": note.title, "body": note.body}}
        if not note.high_priority:
            aps["sound"] = "default"
        request = NotificationRequest(
            device_token=device.token,
            message={"aps": aps, **note.data},
            priority=int(PRIORITY_HIGH if note.high_priority else PRIORITY_NORMAL),
            collapse_key=note.collapse_id or None,
            push_type=PushType.ALERT,
        )
        try:
            answer = await self._client.send_notification(request)
        except (
            ApnsConnectionError,
            ConnectionClosed,
            MaxAttemptsExceeded,
            OSError,
            TimeoutError,
        ) as exc:
            return Result(Outcome.RETRY, None, f"apns unreachable: {exc}")
        if answer.is_successful:
            return Result(Outcome.SENT)
        reason = answer.description or ""
        if answer.status == "410" or reason in INVALID_REASONS:
            return Result(Outcome.INVALID_TOKEN, None, reason)
        if answer.status in RETRY_STATUSES:
            return Result(Outcome.RETRY, None, reason or answer.status)
        return Result(Outcome.FAILED, None, f"{answer.status} {reason}")

    async def close(self) -> None:
        """Close the connection pool."""
        self._client.pool.close()
