"""`python -m chat_users.notifications`: the push notifications worker.

A durable JetStream pull consumer (`notifications`) on the `PUSH` stream: new messages
(`evt.messages.new`) and call rings (`evt.calls.push`). A message is acked only when
every push it calls for went out (or was refused for good); a transient failure naks it
with a delay (JetStream redelivers it, here or on another replica), and a crash leaves it
unacked for redelivery after `ack_wait`. Several replicas share the consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

import msgspec
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from chat_contracts import subjects
from chat_contracts.bus import CallPush, MessagePushes
from chat_runtime import nats_auth
from chat_runtime.clock import SystemClock
from chat_runtime.jetstream import PullConsumer
from chat_runtime.logs import LIFECYCLE, setup_logging
from chat_runtime.nats_auth import NOTIFICATIONS
from chat_runtime.redis_client import connect_redis
from chat_runtime.service import bus_check, opened_store, start_ops, start_tracing
from chat_runtime.settings import RedisSettings, exit_on_error, load_settings
from chat_runtime.worker import cancel_tasks, run, wait_for_shutdown
from chat_users.directory import ChatDirectory
from chat_users.notifier import Later, Notifier
from chat_users.push import Provider
from chat_users.push.apns import ApnsProvider
from chat_users.push.fcm import DEFAULT_ENDPOINT as FCM_ENDPOINT
from chat_users.push.fcm import FcmProvider
from chat_users.push.log import LogProvider
from chat_users.push.webpush import WebPushProvider
from chat_users.store import UserStore
from chat_users.store.mongo import MongoUserStore
from chat_users.store.sqlite import SqliteUserStore

log = logging.getLogger(__name__)
lifecycle = logging.getLogger(LIFECYCLE)

DURABLE = "notifications"
_messages = msgspec.msgpack.Decoder(MessagePushes)
_call = msgspec.msgpack.Decoder(CallPush)


class NotificationsSettings(RedisSettings, kw_only=True, frozen=True):
    """`CHAT_PUSH_*` settings; a provider without its settings is replaced by `log`."""

    #: FCM HTTP v1: the Firebase project and a service-account JSON key file.
    push_fcm_project: str = ""
    push_fcm_credentials: str = ""
    push_fcm_endpoint: str = FCM_ENDPOINT
    #: APNs token auth: the `.p8` key file, its key id, the team id, the app's bundle id.
    push_apns_key_file: str = ""
    push_apns_key_id: str = ""
    push_apns_team_id: str = ""
    push_apns_topic: str = ""
    push_apns_sandbox: bool = False
    #: `host:port` instead of Apple's (tests, proxies), and a CA file to trust for it.
    push_apns_endpoint: str = ""
    push_apns_ca_file: str = ""
    #: Web Push VAPID: private key (PEM file or base64url) and the `sub` claim (mailto:).
    push_vapid_private_key: str = ""
    push_vapid_subject: str = ""
    #: Attempts per push before the message is handed back to JetStream with a delay.
    push_max_attempts: int = 4
    #: Characters of message text in a push.
    push_preview_length: int = 100
    #: Unacked messages come back after this long (s): a crashed worker's included.
    push_ack_wait_s: float = 30.0


def providers(settings: NotificationsSettings) -> dict[str, Provider]:
    """One provider per kind; the `log` provider where a kind is not configured."""
    fcm: Provider = LogProvider("fcm (log)")
    if settings.push_fcm_project and settings.push_fcm_credentials:
        fcm = FcmProvider(
            project_id=settings.push_fcm_project,
            credentials_file=settings.push_fcm_credentials,
            endpoint=settings.push_fcm_endpoint,
        )
    apns: Provider = LogProvider("apns (log)")
    if settings.push_apns_key_file:
        apns = ApnsProvider(
            key_file=settings.push_apns_key_file,
            key_id=settings.push_apns_key_id,
            team_id=settings.push_apns_team_id,
            topic=settings.push_apns_topic,
            sandbox=settings.push_apns_sandbox,
            endpoint=settings.push_apns_endpoint,
            ca_file=settings.push_apns_ca_file,
        )
    web: Provider = LogProvider("webpush (log)")
    if settings.push_vapid_private_key:
        web = WebPushProvider(
            private_key=settings.push_vapid_private_key, subject=settings.push_vapid_subject
        )
    return {"fcm": fcm, "apns": apns, "webpush": web}


class Handler:
    """Acks, naks or terms each stream message after delivering it."""

    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier

    async def __call__(self, msg: Msg) -> None:
        try:
            if msg.subject == subjects.CALL_PUSH:
                outcomes = [await self._notifier.call(_call.decode(msg.data))]
            else:
                batch = _messages.decode(msg.data).events
                # In send order; a redelivered batch skips every push already done.
                outcomes = [await self._notifier.message(event) for event in batch]
        except msgspec.DecodeError as exc:
            log.error("undecodable push event on %s: %s", msg.subject, exc)
            await msg.term()
            return
        except Exception:
            # A service it asks is down, a bug: JetStream redelivers it later.
            log.exception("push delivery failed; redelivered later")
            await msg.nak(delay=2.0)
            return
        waits = [o.delay_s for o in outcomes if isinstance(o, Later)]
        if waits:
            await msg.nak(delay=max(waits))
        else:
            await msg.ack()


async def serve(settings: NotificationsSettings) -> None:
    """Consume until SIGTERM/SIGINT."""
    ops = await start_ops(NOTIFICATIONS, settings)
    bus = await nats_auth.connect(settings, NOTIFICATIONS)
    ops.add_check("nats", bus_check(bus))
    redis = connect_redis(settings)
    ops.add_check("redis", redis.ping)
    sqlite: Callable[[Path], UserStore] = SqliteUserStore
    mongo: Callable[[str, str], UserStore] = MongoUserStore
    by_kind = providers(settings)
    async with opened_store(settings, "users.sqlite3", sqlite, mongo) as store:
        notifier = Notifier(
            store=store,
            redis=redis,
            bus=bus,
            directory=ChatDirectory(bus),
            providers=by_kind,
            clock=SystemClock(),
            max_attempts=settings.push_max_attempts,
            preview_length=settings.push_preview_length,
        )
        consumer = PullConsumer(
            bus,
            DURABLE,
            Handler(notifier),
            ack_wait_s=settings.push_ack_wait_s,
            storage=settings.push_stream_storage,
        )
        task = asyncio.ensure_future(consumer.run())
        ops.started = True
        lifecycle.info(
            "notifications ready: %s",
            ", ".join(f"{kind}={p.name}" for kind, p in sorted(by_kind.items())),
        )
        await wait_for_shutdown()
        ops.draining = True
        lifecycle.info("notifications draining")
        await cancel_tasks([task])
        for provider in by_kind.values():
            await provider.close()
    await redis.aclose()
    with contextlib.suppress(NatsError):
        await bus.close()
    await ops.close()


def main() -> None:
    """Entry point."""
    settings = exit_on_error(lambda: load_settings(NotificationsSettings))
    setup_logging(settings.log_level, settings.log_format, NOTIFICATIONS)
    flush = start_tracing(settings, NOTIFICATIONS)
    try:
        run(lambda: serve(settings))
    finally:
        flush()


if __name__ == "__main__":
    main()
