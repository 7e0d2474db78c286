"""Pure push rules: what a notification says, and how long to wait before a retry."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from chat_contracts.bus import CallPush, MessagePush
from chat_users.push import Notification

#: Text shown when previews are off, or for a message without text.
NO_PREVIEW = "New message"
#: Media messages without a caption say what they are.
MEDIA_LABELS = {"IMAGE": "Photo", "VIDEO": "Video", "AUDIO": "Audio", "FILE": "File"}
#: First retry after 1 s, doubling, at most 60 s (when the service names no time).
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 60.0


def preview(event: MessagePush, max_length: int) -> str:
    """The message text as a push shows it (cut at `max_length` characters)."""
    text = event.content.strip()
    if not text:
        return MEDIA_LABELS.get(event.type, NO_PREVIEW)
    return text if len(text) <= max_length else text[: max_length - 1] + "…"


def message_note(event: MessagePush, *, previews: bool, max_length: int) -> Notification:
    """The push of a new message: sender as title, a preview (or none) as body."""
    return Notification(
        title=event.sender_name,
        body=preview(event, max_length) if previews else NO_PREVIEW,
        data={
            "type": "message",
            "chatId": event.chat_id,
            "messageId": event.message_id,
            "senderId": event.sender_id,
            "senderName": event.sender_name,
        },
        collapse_id=event.message_id,
    )


def call_note(event: CallPush) -> Notification:
    """The push that rings a callee: high priority."""
    kind = "Video call" if event.call_type == "video" else "Call"
    return Notification(
        title=event.caller_name,
        body=f"{kind} from {event.caller_name}",
        data={
            "type": "call",
            "callId": event.call_id,
            "callerId": event.caller_id,
            "callerName": event.caller_name,
            "callType": event.call_type,
        },
        high_priority=True,
        collapse_id=event.call_id,
    )


def retry_after(header: str | None, now: datetime) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or an HTTP date)."""
    if not header:
        return None
    value = header.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def backoff(attempt: int, asked_s: float | None) -> float:
    """Wait before retry number `attempt` (1-based): the service's `Retry-After` when it
    gave one, else exponential from `BACKOFF_BASE_S` up to `BACKOFF_MAX_S`."""
    if asked_s is not None:
        return asked_s
    return float(min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (attempt - 1)))
