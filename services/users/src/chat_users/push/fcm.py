"""Firebase Cloud Messaging, HTTP v1 API, with service-account OAuth2 (`google-auth`).

`POST {endpoint}/v1/projects/{project}/messages:send` with a bearer token that
`google-auth` mints from the service account (a signed JWT exchanged at the account's
`token_uri`; cached until it expires, about an hour). Answers (FCM v1 error codes):
200 sent; 404 `UNREGISTERED` and 400 `INVALID_ARGUMENT` about the token → the token is
invalid; 429 `QUOTA_EXCEEDED`, 500 `INTERNAL`, 503 `UNAVAILABLE` → retry, honouring
`Retry-After`; 401 → the token is refreshed and the push retried.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import aiohttp
import google.auth.transport.requests
from google.oauth2 import service_account

from chat_users.domain import Device
from chat_users.push import Notification, Outcome, Result
from chat_users.push.payload import retry_after

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
DEFAULT_ENDPOINT = "https://fcm.googleapis.com"
#: Error codes (`error.details[].errorCode`, else `error.status`) that condemn the token.
INVALID_TOKEN_CODES = frozenset({"UNREGISTERED", "INVALID_ARGUMENT"})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class FcmProvider:
    """FCM HTTP v1 for Android devices and iOS apps that use FCM tokens."""

    name = "fcm"

    def __init__(
        self,
        *,
        project_id: str,
        credentials_file: str,
        endpoint: str = DEFAULT_ENDPOINT,
        timeout_s: float = 10.0,
    ) -> None:
        self._credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
            credentials_file, scopes=[SCOPE]
        )
        self._url = f"{endpoint.rstrip('/')}/v1/projects/{project_id}/messages:send"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._refresh_lock = asyncio.Lock()

    async def _token(self, *, force: bool = False) -> str:
        async with self._refresh_lock:
            if force or not self._credentials.valid:
                # google-auth's transport is synchronous (requests): off the event loop.
                request = google.auth.transport.requests.Request()
                await asyncio.to_thread(self._credentials.refresh, request)
            token: str = self._credentials.token
            return token

    def _body(self, device: Device, note: Notification) -> dict[str, Any]:
        message: dict[str, Any] = {
            "token": device.token,
            "notification": {"title": note.title, "body": note.body},
            "data": note.data,
            "android": {
                "priority": "high" if note.high_priority else "normal",
                "collapse_key": note.collapse_id,
            },
            "apns": {
                "headers": {
                    "apns-priority": "10" if note.high_priority else "5",
                    "apns-collapse-id": note.collapse_id,
                }
            },
        }
        return {"message": message}

    async def send(self, device: Device, note: Notification) -> Result:
        """One `messages:send`; a 401 refreshes the OAuth2 token once."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        body = self._body(device, note)
        for attempt in range(2):
            token = await self._token(force=attempt > 0)
            headers = {"Authorization": f"Bearer {token}"}
            try:
                async with self._session.post(self._url, json=body, headers=headers) as resp:
                    status = resp.status
                    payload = await resp.json(content_type=None) if status != 200 else None
                    asked = retry_after(resp.headers.get("Retry-After"), datetime.now(UTC))
            except (aiohttp.ClientError, TimeoutError) as exc:
                return Result(Outcome.RETRY, None, f"fcm unreachable: {exc}")
            if status == 401 and attempt == 0:
                continue
            return _result(status, payload, asked)
        return Result(Outcome.FAILED, None, "fcm refused the OAuth2 token")

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()


def _error_code(payload: Any) -> str:
    error = payload.get("error", {}) if isinstance(payload, dict) else {}
    for detail in error.get("details", []) or []:
        if isinstance(detail, dict) and detail.get("errorCode"):
            return str(detail["errorCode"])
    return str(error.get("status", ""))


def _result(status: int, payload: Any, asked: float | None) -> Result:
    if status == 200:
        return Result(Outcome.SENT)
    code = _error_code(payload)
    if status in (400, 404) and code in INVALID_TOKEN_CODES:
        return Result(Outcome.INVALID_TOKEN, None, code)
    if status in RETRY_STATUSES:
        return Result(Outcome.RETRY, asked, code or str(status))
    return Result(Outcome.FAILED, None, code or str(status))
