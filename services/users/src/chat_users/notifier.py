"""Push delivery of one stream message: who gets it, on which devices, exactly once each.

For a new message: the recipients (the DM peer, or the group's members) minus the
sender, minus those with a connected socket (a live presence lease), with the chat
muted (`cmd.messages.muted`), or with a block between them and the sender. For a call:
the callee. Every device of each recipient gets one push through its provider.

Exactly once per (message, device), across crashes and redeliveries: each push is
recorded `sending` before the provider call and `sent` (or `dropped`) after it, in the
users store; a redelivered message skips devices already `sent`/`dropped`. Only a crash
between the provider's answer and the `sent` record (a millisecond) repeats a push, and
the repeat carries the same collapse id, so the device shows it once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from chat_contracts import DomainError, ErrorCode, subjects
from chat_contracts.bus import Actor, CallPush, MessagePush, Muted, MutedQuery
from chat_runtime import presence
from chat_runtime.bus import Bus
from chat_runtime.clock import Clock
from chat_users.directory import ChatDirectory
from chat_users.domain import Device
from chat_users.push import Notification, Outcome, Provider
from chat_users.push.payload import backoff, call_note, message_note
from chat_users.store import UserStore

log = logging.getLogger(__name__)

_MUTED = subjects.command(subjects.MESSAGES, "muted")

SENDING = "sending"
SENT = "sent"
DROPPED = "dropped"
#: A messages worker that does not serve `cmd.messages.muted` is asked again after this (s).
MUTE_RECHECK_S = 60.0
#: Devices pushed to at once for one message.
PARALLEL_PUSHES = 32

#: What a push says on one device (previews differ per device).
NoteFor = Callable[[Device], Notification]


@dataclass(frozen=True)
class Later:
    """Not every push went out: redeliver the message after `delay_s`."""

    delay_s: float


class Notifier:
    """Delivers `MessagePush` and `CallPush` events to devices."""

    def __init__(
        self,
        *,
        store: UserStore,
        redis: Redis,
        bus: Bus,
        directory: ChatDirectory,
        providers: dict[str, Provider],
        clock: Clock,
        max_attempts: int = 4,
        max_wait_s: float = 30.0,
        preview_length: int = 100,
    ) -> None:
        self._store = store
        self._redis = redis
        self._bus = bus
        self._directory = directory
        self._providers = providers
        self._clock = clock
        self._max_attempts = max_attempts
        self._max_wait_s = max_wait_s
        self._preview_length = preview_length
        #: Until when (monotonic s) a messages worker without `muted` is not asked again.
        self._mute_query_missing_until = 0.0

    # --- who

    async def _recipients(self, event: MessagePush) -> list[str]:
        if event.recipient_ids:
            candidates = list(event.recipient_ids)
        else:
            candidates = await self._directory.members(event.sender_id, event.chat_id)
        return [uid for uid in dict.fromkeys(candidates) if uid != event.sender_id]

    async def _offline(self, user_ids: list[str]) -> list[str]:
        """Those without a live presence lease (no connected socket anywhere)."""
        live = await presence.connected(self._redis, user_ids, int(time.time() * 1000))
        return [uid for uid, on in zip(user_ids, live, strict=True) if not on]

    async def _muted(self, event: MessagePush, user_ids: list[str]) -> set[str]:
        if not user_ids or time.monotonic() < self._mute_query_missing_until:
            return set()
        query = MutedQuery(chat_id=event.chat_id, user_ids=user_ids)
        actor = Actor(user_id=event.sender_id, name=event.sender_name)
        try:
            muted = await self._bus.query(_MUTED, query, Muted, actor=actor, timeout_ms=2_000)
        except DomainError as exc:
            if exc.code is ErrorCode.NOT_IMPLEMENTED:  # an older messages worker
                log.warning("cmd.messages.muted is not served: no chat counts as muted")
                self._mute_query_missing_until = time.monotonic() + MUTE_RECHECK_S
                return set()
            raise
        return set(muted.user_ids)

    # --- delivery

    async def message(self, event: MessagePush) -> Later | None:
        """Push a new message to its offline, unmuted, unblocked recipients."""
        recipients = await self._recipients(event)
        hidden = set(await self._store.hidden(event.sender_id))
        recipients = [uid for uid in recipients if uid not in hidden]
        recipients = await self._offline(recipients)
        muted = await self._muted(event, recipients)
        targets = [uid for uid in recipients if uid not in muted]
        return await self._deliver(
            event.message_id,
            targets,
            lambda device: message_note(
                event, previews=device.previews, max_length=self._preview_length
            ),
        )

    async def call(self, event: CallPush) -> Later | None:
        """Ring the callee's devices (high priority)."""
        note = call_note(event)
        return await self._deliver(event.call_id, [event.callee_id], lambda _device: note)

    async def _deliver(self, key: str, user_ids: list[str], note_for: NoteFor) -> Later | None:
        done = await self._store.push_states(key)
        devices: list[Device] = []
        for uid in user_ids:
            devices.extend(
                d
                for d in await self._store.devices(uid)
                if done.get((uid, d.device_id)) not in (SENT, DROPPED)
            )
        slots = asyncio.Semaphore(PARALLEL_PUSHES)

        async def one(device: Device) -> float | None:
            async with slots:
                return await self._push(key, device, note_for(device))

        waits = [w for w in await asyncio.gather(*(one(d) for d in devices)) if w is not None]
        return Later(max(waits)) if waits else None

    async def _push(self, key: str, device: Device, note: Notification) -> float | None:
        """One device; None when finished, else how long to wait before a redelivery."""
        provider = self._providers[device.provider]
        await self._store.set_push_state(
            key, device.user_id, device.device_id, SENDING, self._clock.now()
        )
        for attempt in range(1, self._max_attempts + 1):
            result = await provider.send(device, note)
            if result.outcome is Outcome.SENT:
                await self._mark(key, device, SENT)
                return None
            if result.outcome is Outcome.INVALID_TOKEN:
                log.info(
                    "%s: token of %s/%s invalid (%s): device removed",
                    provider.name,
                    device.user_id,
                    device.device_id,
                    result.detail,
                )
                await self._store.remove_token(device.user_id, device.device_id, device.token)
                await self._mark(key, device, DROPPED)
                return None
            if result.outcome is Outcome.FAILED:
                log.warning("%s refused a push for good: %s", provider.name, result.detail)
                await self._mark(key, device, DROPPED)
                return None
            wait = backoff(attempt, result.retry_after_s)
            if attempt == self._max_attempts or wait > self._max_wait_s:
                # Hand the wait to JetStream (nak with delay) instead of holding it here.
                return wait
            await asyncio.sleep(wait)
        return backoff(self._max_attempts, None)

    async def _mark(self, key: str, device: Device, state: str) -> None:
        await self._store.set_push_state(
            key, device.user_id, device.device_id, state, self._clock.now()
        )
