"""Who may do what on the bus: one NATS user per service, and how a process logs in.

The table below is the bus's access list. Only gateways publish client commands
(`cmd.>`) and hear fan-out (`rt.>`); a domain worker subscribes to its own
`cmd.<domain>.>`, publishes fan-out (`rt.>`), its own events (`evt.<domain>.>`), its
replies (`allow_responses`), and the few queries it makes to other domains, listed here
by subject. Events between services are readable by every worker (`evt.>`: they exist
to be consumed elsewhere; publishing one stays limited to its domain).

Replies come back on a per-user inbox prefix (`_INBOX_<user>.`), so no service can
subscribe to another's replies.

    python -m chat_runtime.nats_auth --helm   values for the NATS Helm chart (passwords
                                              from the environment of the NATS pods)
    python -m chat_runtime.nats_auth --conf   a nats-server config (passwords from the
                                              environment of nats-server)
"""

from __future__ import annotations

import argparse
import secrets
import ssl
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from chat_contracts import services, subjects
from chat_runtime.bus import Bus
from chat_runtime.settings import BaseSettings

GATEWAY = "gateway"
REPLY_PREFIX = "_INBOX_"
#: Wildcards over the subject families of chat_contracts.subjects.
EVERY_COMMAND = f"{subjects.COMMAND_PREFIX}.>"
EVERY_EVENT = f"{subjects.EVENT_PREFIX}.>"
#: `rt.user.<id>` and `rt.room.<id>` (subjects.USER_PREFIX, subjects.ROOM_PREFIX).
EVERY_FANOUT = "rt.>"


@dataclass(frozen=True)
class Access:
    """One NATS user's permissions."""

    user: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    #: May publish to the reply subject of a request it received.
    responds: bool

    def permissions(self) -> dict[str, Any]:
        """The `permissions` block of nats-server's `authorization.users` entry."""
        block: dict[str, Any] = {
            "publish": {"allow": list(self.publish)},
            "subscribe": {"allow": list(self.subscribe)},
        }
        if self.responds:
            block["allow_responses"] = True
        return block


def inbox(user: str) -> str:
    """The reply-subject prefix of `user` (the client's `inbox_prefix`)."""
    return REPLY_PREFIX + user


def gateway_access() -> Access:
    """Gateways: every client command, fan-out both ways (typing, presence relays), and
    domain events to read."""
    return Access(
        GATEWAY,
        publish=(EVERY_COMMAND, EVERY_FANOUT),
        # Domain events too: blocks (`evt.users.block`) hide presence at the edge.
        subscribe=(EVERY_FANOUT, EVERY_EVENT, inbox(GATEWAY) + ".>"),
        responds=False,
    )


def worker_access(domain: str, queries: tuple[str, ...] = ()) -> Access:
    """A domain worker: its commands in, fan-out and its events out, declared queries."""
    subscribe = [subjects.command_prefix(domain) + ">", EVERY_EVENT]
    if queries:
        subscribe.append(inbox(domain) + ".>")
    return Access(
        domain,
        publish=(EVERY_FANOUT, f"{subjects.EVENT_PREFIX}.{domain}.>", *queries),
        subscribe=tuple(subscribe),
        responds=True,
    )


def stream_api(stream: str) -> tuple[str, ...]:
    """A stream's JetStream API for the processes that make sure it exists
    (`add_stream`: create, or find it there)."""
    return (f"$JS.API.STREAM.CREATE.{stream}", f"$JS.API.STREAM.INFO.{stream}")


def consumer_api(stream: str) -> tuple[str, ...]:
    """A durable pull consumer's JetStream API on `stream` (chat_runtime.jetstream.
    PullConsumer): look it up, create it, pull batches. Acks go to the delivered
    messages' reply subjects (`allow_responses`)."""
    return (
        f"$JS.API.CONSUMER.*.{stream}.>",  # INFO, CREATE
        f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.>",  # pull a batch
    )


#: The push stream: publishers make sure it exists (chat_runtime.jetstream.
#: ensure_push_stream); the notifications worker consumes it.
PUSH_STREAM_API = stream_api(subjects.PUSH_STREAM)
PUSH_CONSUMER_API = consumer_api(subjects.PUSH_STREAM)
#: The push worker (`python -m chat_users.notifications`): a process of the users
#: service with a NATS user of its own.
NOTIFICATIONS = "notifications"

_GROUPS_READS = (
    subjects.command(subjects.GROUPS, "membership"),
    subjects.command(subjects.GROUPS, "members"),
    subjects.command(subjects.GROUPS, "mine"),
)

#: Requests a worker makes to another domain (services without any are left out). A
#: new cross-domain query needs its line here, or NATS refuses it in any install with
#: per-service users.
QUERIES: dict[str, tuple[str, ...]] = {
    subjects.MESSAGES: (
        subjects.command(subjects.GROUPS, "membership"),
        subjects.command(subjects.GROUPS, "mine"),
        # Who a user blocks or is blocked by (chat_runtime.blocks.HiddenSets).
        subjects.command(subjects.USERS, "hidden"),
        # A message's `mediaUrl` is vetted by the media service (chat_messages.media).
        subjects.command(subjects.MEDIA, subjects.MEDIA_CLAIM),
        *PUSH_STREAM_API,
    ),
    subjects.USERS: (
        *_GROUPS_READS,
        subjects.command(subjects.MESSAGES, "mine"),
    ),
    subjects.CALLS: (
        subjects.command(subjects.USERS, "block_state"),
        subjects.command(subjects.USERS, "devices"),
        *PUSH_STREAM_API,
    ),
    # Who may read a media (chat_media.access): a group's members, a user's chats; and
    # the deletions stream it makes and consumes (`evt.messages.deleted`).
    subjects.MEDIA: (
        subjects.command(subjects.GROUPS, "membership"),
        subjects.command(subjects.MESSAGES, "mine"),
        *stream_api(subjects.MEDIA_STREAM),
        *consumer_api(subjects.MEDIA_STREAM),
    ),
}


def access_list() -> list[Access]:
    """Every service's NATS user: the gateway, then each worker of the services list."""
    unknown = set(QUERIES) - set(services.BY_NAME)
    if unknown:
        raise ValueError(f"queries declared for services that do not exist: {sorted(unknown)}")
    workers = [worker_access(s.name, QUERIES.get(s.name, ())) for s in services.SERVICES]
    return [gateway_access(), *workers, notifications_access()]


def notifications_access() -> Access:
    """The push worker: pulls the push stream, asks groups and messages who to tell."""
    reads = (*_GROUPS_READS, subjects.command(subjects.MESSAGES, "mine"))
    muted = subjects.command(subjects.MESSAGES, "muted")
    return Access(
        NOTIFICATIONS,
        publish=(*reads, muted, *PUSH_STREAM_API, *PUSH_CONSUMER_API),
        subscribe=(inbox(NOTIFICATIONS) + ".>",),
        responds=True,
    )


def new_password() -> str:
    """A NATS password safe in a `$VAR` reference: nats-server parses the variable's value
    as a config token, so one starting with a digit can turn into a number or a date (a
    parse error at start) — a letter, then 48 hex digits (192 bits)."""
    return "n" + secrets.token_hex(24)


def password_variable(user: str) -> str:
    """The environment variable (and chat Secret key) holding `user`'s password."""
    return f"NATS_PASSWORD_{user.upper()}"


def server_authorization(passwords: Mapping[str, str]) -> dict[str, Any]:
    """nats-server's `authorization` block with the given passwords (by user)."""
    return {
        "users": [
            {"user": a.user, "password": passwords[a.user], "permissions": a.permissions()}
            for a in access_list()
        ]
    }


def helm_values() -> dict[str, Any]:
    """Values for the NATS Helm chart: users whose passwords come from the pods' env.

    The chart writes `<< $VAR >>` unquoted into nats.conf, where nats-server reads the
    variable from its environment; the env comes from the Secret `nats-users`.
    """
    users = {a.user: f"<< ${password_variable(a.user)} >>" for a in access_list()}
    env = {
        password_variable(user): {
            "valueFrom": {"secretKeyRef": {"name": "nats-users", "key": password_variable(user)}}
        }
        for user in users
    }
    return {
        "config": {"merge": {"authorization": server_authorization(users)}},
        "container": {"env": env},
    }


# --------------------------------------------------------------------------- client


def connect_options(settings: BaseSettings) -> dict[str, Any]:
    """nats-py `connect` keyword arguments for the credentials and TLS in `settings`."""
    options: dict[str, Any] = {}
    if settings.nats_user:
        options["user"] = settings.nats_user
        options["password"] = settings.nats_password
        options["inbox_prefix"] = inbox(settings.nats_user)
    if settings.nats_creds:
        options["user_credentials"] = settings.nats_creds
    if settings.nats_tls_ca or settings.nats_tls_cert:
        context = ssl.create_default_context(cafile=settings.nats_tls_ca or None)
        if settings.nats_tls_cert:
            context.load_cert_chain(settings.nats_tls_cert, settings.nats_tls_key)
        options["tls"] = context
    return options


async def connect(settings: BaseSettings, name: str) -> Bus:
    """The process's bus, logged in as `settings` say.

    A NATS that is not up yet at boot is waited for (the bus retries forever, every
    0.5 s), while the ops server answers "starting": the startup probe's 60 s, not a
    crash loop.
    """
    return await Bus.connect(
        settings.nats_url,
        name=name,
        randomize=settings.nats_randomize,
        **connect_options(settings),
    )


def server_config() -> str:
    """A nats-server config with every service's user; each password is a `$VAR`
    reference (left unquoted, the form nats-server expands from its environment)."""
    refs = {a.user: f"${password_variable(a.user)}" for a in access_list()}
    text = _json_text({"authorization": server_authorization(refs)})
    for access in access_list():
        variable = password_variable(access.user)
        text = text.replace(f'"${variable}"', f"${variable}")
    return text


def _json_text(document: dict[str, Any]) -> str:
    return msgspec.json.format(msgspec.json.encode(document), indent=2).decode() + "\n"


def main(argv: list[str] | None = None) -> None:
    """Print the Helm values or the nats-server config (JSON, which both read)."""
    parser = argparse.ArgumentParser(prog="python -m chat_runtime.nats_auth")
    kind = parser.add_mutually_exclusive_group(required=True)
    kind.add_argument("--helm", action="store_true", help="values for the NATS Helm chart")
    kind.add_argument("--conf", action="store_true", help="a nats-server config file")
    args = parser.parse_args(argv)
    sys.stdout.write(_json_text(helm_values()) if args.helm else server_config())


if __name__ == "__main__":
    main()
