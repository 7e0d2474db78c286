"""Typed settings from `CHAT_*` environment variables, parsed once at start.

A service declares a `msgspec.Struct` of its settings (subclassing `BaseSettings`);
`load_settings` reads `CHAT_<FIELD>` (or the file `CHAT_<FIELD>_FILE` names) for each
field and converts it. A missing or
malformed value raises `SettingsError` naming the variable, and `exit_on_error` turns
that into a one-line message and exit status 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from typing import ClassVar, Literal, TypeVar

import msgspec

from chat_runtime.redis_auth import with_login

PREFIX = "CHAT_"


class SettingsError(Exception):
    """A `CHAT_*` variable is missing or malformed."""


class BaseSettings(msgspec.Struct, kw_only=True, frozen=True):
    """What every service reads: the bus, the store, logging."""

    #: One server, or several of one cluster comma-separated (`chat_runtime.bus.servers`).
    nats_url: str = "nats://127.0.0.1:4222"
    #: False: connect to the servers in the order listed (pin a process to a node).
    nats_randomize: bool = True
    store: Literal["sqlite", "mongo"] = "sqlite"
    sqlite_dir: str = ".data"
    mongodb_url: str = ""
    mongodb_db: str = "chat"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: How many commands one worker process runs at once.
    max_in_flight: int = 64
    #: JetStream storage of the push stream (`chat_runtime.jetstream`): `file` survives a
    #: nats-server restart; `memory` only a worker restart, and costs no disk I/O.
    push_stream_storage: Literal["file", "memory"] = "file"
    #: `text` (human-readable, the dev default) or `json` (one object per line).
    log_format: Literal["text", "json"] = "text"
    #: The ops HTTP server (/healthz, /readyz, /metrics): off when unset, 0 = a free
    #: port (logged), 9090 in Kubernetes.
    health_host: str = "127.0.0.1"
    health_port: int | None = None
    #: NATS credentials: a user and password, or a `.creds` file (JWT + NKey seed, the
    #: decentralised mode); TLS with a CA bundle and optionally a client certificate.
    nats_user: str = ""
    nats_password: str = ""
    nats_creds: str = ""
    nats_tls_ca: str = ""
    nats_tls_cert: str = ""
    nats_tls_key: str = ""
    #: OTLP/HTTP traces endpoint (`http://otel-collector:4318/v1/traces`): export a span
    #: per client event and per command. Empty: trace ids in logs and headers only.
    otel_endpoint: str = ""
    #: False for a process without a store (the gateway): one ConfigMap sets
    #: CHAT_STORE=mongo for every pod, and only the workers get the MongoDB URL.
    uses_store: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.uses_store and self.store == "mongo" and not self.mongodb_url:
            raise ValueError("CHAT_MONGODB_URL is required when CHAT_STORE=mongo")
        if bool(self.nats_user) != bool(self.nats_password):
            raise ValueError("CHAT_NATS_USER and CHAT_NATS_PASSWORD go together")
        if self.nats_creds and self.nats_user:
            raise ValueError("CHAT_NATS_CREDS and CHAT_NATS_USER exclude each other")
        if bool(self.nats_tls_cert) != bool(self.nats_tls_key):
            raise ValueError("CHAT_NATS_TLS_CERT and CHAT_NATS_TLS_KEY go together")


#: The Sentinel service name when `CHAT_REDIS_SENTINEL_MASTER` is not set (Redis' own
#: example name, and the Bitnami Helm chart's default).
DEFAULT_SENTINEL_MASTER = "mymaster"


class RedisSettings(BaseSettings, kw_only=True, frozen=True):
    """The shared settings plus Redis (gateway, calls); see `chat_runtime.redis_client`."""

    #: `redis://`, `rediss://` (TLS; `?ssl_ca_certs=<path>` for a private CA) or `unix://`.
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Sentinels (`host:port`, comma-separated); empty = `redis_url` is the server.
    redis_sentinels: list[str] = []
    redis_sentinel_master: str = DEFAULT_SENTINEL_MASTER
    #: An ACL user; its password from a Secret (overrides credentials in the URL).
    redis_username: str = ""
    redis_password: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        for address in self.redis_sentinels:
            sentinel_address(address)

    @property
    def redis_address(self) -> str:
        """`redis_url` with the ACL login in it: what every Redis client connects with."""
        return with_login(self.redis_url, self.redis_username, self.redis_password)


def sentinel_address(address: str) -> tuple[str, int]:
    """`host:port` of one sentinel (`[v6]:port` too); ValueError when malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"CHAT_REDIS_SENTINELS: {address!r} is not host:port")
    return host.strip("[]"), int(port)


S = TypeVar("S", bound=BaseSettings)


def variable(field: str) -> str:
    """The environment variable of a settings field."""
    return PREFIX + field.upper()


def load_settings(kind: type[S], environ: Mapping[str, str] | None = None) -> S:
    """Build `kind` from the environment; raise `SettingsError` naming the bad variable."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for field in msgspec.structs.fields(kind):
        raw = env.get(variable(field.name))
        if raw is None:
            raw = _from_file(env, variable(field.name))
        if raw is None or (raw == "" and not field.required):
            if field.required:
                raise SettingsError(f"{variable(field.name)} is required")
            continue
        value: object = raw
        if getattr(field.type, "__origin__", None) is list:
            # Lists are comma-separated: CHAT_ALLOWED_ORIGINS=https://a.example,https://b.example
            value = [item.strip() for item in raw.split(",") if item.strip()]
        try:
            values[field.name] = msgspec.convert(value, field.type, strict=False)
        except msgspec.ValidationError as exc:
            message = str(exc).split(" - at ")[0]
            raise SettingsError(f"{variable(field.name)}={raw!r} is invalid: {message}") from None
    try:
        return msgspec.convert(values, kind, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(str(exc)) from None


#: `CHAT_<X>_FILE=/path` reads CHAT_<X> from that file (a mounted Secret): secrets then
#: stay out of the environment, which child processes, crash reports and
#: `/proc/<pid>/environ` readers would see.
FILE_SUFFIX = "_FILE"


def _from_file(env: Mapping[str, str], name: str) -> str | None:
    path = env.get(name + FILE_SUFFIX)
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as file:
            # One trailing newline is how `echo` and most editors end a file.
            return file.read().removesuffix("\n")
    except OSError as exc:
        raise SettingsError(f"{name}{FILE_SUFFIX}={path!r} is unreadable: {exc.strerror}") from None


def exit_on_error(loader: Callable[[], S]) -> S:
    """Run a settings loader; on `SettingsError` print it and exit with status 2."""
    try:
        return loader()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
