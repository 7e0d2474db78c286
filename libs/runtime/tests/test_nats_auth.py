"""The generated per-service NATS users, enforced by a real nats-server."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from chat_contracts import services, subjects
from chat_runtime import nats_auth
from chat_runtime.bus import Bus
from chat_runtime.settings import BaseSettings
from chat_testkit.servers import Missing, NatsServer, nats_with_users
from chat_testkit.tls import self_signed

WAIT_S = 5.0
PASSWORDS = {a.user: nats_auth.new_password() for a in nats_auth.access_list()}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """nats-server with `python -m chat_runtime.nats_auth --conf`, passwords in its env."""
    try:
        running = nats_with_users(tmp_path_factory.mktemp("nats-auth"), PASSWORDS)
    except Missing as exc:
        pytest.skip(str(exc))
    yield running
    running.stop()


class Login:
    """A connection as one service, with the errors the server sent it."""

    def __init__(self) -> None:
        self.errors: asyncio.Queue[str] = asyncio.Queue()
        self.nc: Client | None = None

    async def on_error(self, exc: Exception) -> None:
        await self.errors.put(str(exc))

    async def violation(self) -> str:
        """The next permissions violation the server reported."""
        while True:
            text = await asyncio.wait_for(self.errors.get(), WAIT_S)
            if "permissions violation" in text.lower():
                return text


@contextlib.asynccontextmanager
async def login(server: NatsServer, user: str) -> AsyncIterator[tuple[Client, Login]]:
    settings = BaseSettings(nats_user=user, nats_password=PASSWORDS[user])
    state = Login()
    nc = await nats.connect(
        server.url,
        error_cb=state.on_error,
        allow_reconnect=False,
        **nats_auth.connect_options(settings),
    )
    try:
        yield nc, state
    finally:
        await nc.close()


async def receiver(nc: Client, subject: str) -> asyncio.Queue[str]:
    """A subscription whose received subjects land in a queue."""
    got: asyncio.Queue[str] = asyncio.Queue()

    async def on_msg(msg: Msg) -> None:
        await got.put(msg.subject)
        if msg.reply:
            await nc.publish(msg.reply, b"ok")

    await nc.subscribe(subject, queue=subject.split(".")[1], cb=on_msg)
    await Bus(nc).flush()  # nats-py's flush() can overtake the SUB (Bus.flush)
    return got


async def test_a_worker_cannot_send_another_domains_command(server: NatsServer) -> None:
    async with login(server, "groups") as (groups, _), login(server, "messages") as (nc, state):
        got = await receiver(groups, subjects.command_prefix(subjects.GROUPS) + ">")
        await nc.publish(subjects.command(subjects.GROUPS, "create"), b"x")
        assert "cmd.groups.create" in await state.violation()
        # Its declared query goes through; one connection's messages keep their order,
        # so the refused command would have arrived first.
        reply = await nc.request(subjects.command(subjects.GROUPS, "membership"), b"?", WAIT_S)
        assert reply.data == b"ok"
        assert await asyncio.wait_for(got.get(), WAIT_S) == "cmd.groups.membership"
        assert got.empty()


async def test_the_gateway_sends_any_command_and_gets_the_reply(server: NatsServer) -> None:
    async with login(server, "groups") as (groups, _), login(server, "gateway") as (nc, _):
        got = await receiver(groups, subjects.command_prefix(subjects.GROUPS) + ">")
        reply = await nc.request(subjects.command(subjects.GROUPS, "create"), b"x", WAIT_S)
        assert reply.data == b"ok"
        assert await asyncio.wait_for(got.get(), WAIT_S) == "cmd.groups.create"


async def test_a_worker_cannot_listen_to_another_domains_commands(server: NatsServer) -> None:
    async with login(server, "messages") as (nc, state):
        await nc.subscribe(subjects.command_prefix(subjects.USERS) + ">")
        assert "cmd.users.>" in await state.violation()


async def test_a_worker_cannot_send_commands_even_to_its_own_domain(server: NatsServer) -> None:
    """Only gateways publish client commands; a worker's own domain is no exception."""
    async with login(server, "messages") as (nc, state):
        await nc.publish(subjects.command(subjects.MESSAGES, "send"), b"x")
        assert "cmd.messages.send" in await state.violation()


async def test_a_wrong_password_is_refused(server: NatsServer) -> None:
    with pytest.raises((NatsError, OSError)):
        await nats.connect(server.url, user="gateway", password="wrong", allow_reconnect=False)


def test_the_committed_helm_values_are_current() -> None:
    committed = Path(__file__).resolve().parents[3] / "deploy/k8s/dependencies/nats"
    values = json.loads((committed / "users.values.json").read_text())
    assert values == nats_auth.helm_values(), (
        "regenerate: python -m chat_runtime.nats_auth --helm > "
        "deploy/k8s/dependencies/nats/users.values.json"
    )


def test_connect_options_map_each_login_kind() -> None:
    user = nats_auth.connect_options(BaseSettings(nats_user="users", nats_password="pw"))
    assert user == {"user": "users", "password": "pw", "inbox_prefix": "_INBOX_users"}
    creds = nats_auth.connect_options(BaseSettings(nats_creds="/run/secrets/nats/user.creds"))
    assert creds == {"user_credentials": "/run/secrets/nats/user.creds"}
    assert nats_auth.connect_options(BaseSettings()) == {}


def test_there_is_one_user_per_service_of_the_list() -> None:
    users = [a.user for a in nats_auth.access_list()]
    assert users == ["gateway", *(s.name for s in services.SERVICES), "notifications"]


def test_new_passwords_survive_nats_servers_variable_parsing() -> None:
    """nats-server parses a `$VAR` value as a config token: `12-...` is a date to it."""
    for _ in range(200):
        password = nats_auth.new_password()
        assert password[0].isalpha()
        assert password.isalnum()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    """nats-server that requires TLS and a client certificate: (tls:// URL, cert, key)."""
    workdir = tmp_path_factory.mktemp("nats-tls")
    cert, key = self_signed(workdir, "nats")
    config = workdir / "tls.conf"
    config.write_text(
        json.dumps(
            {"tls": {"cert_file": str(cert), "key_file": str(key), "ca_file": str(cert),
                     "verify": True, "timeout": 2}}
        )
    )  # fmt: skip
    try:
        running = NatsServer(workdir, config=config)
    except Missing as exc:
        pytest.skip(str(exc))
    yield running.url.replace("nats://", "tls://"), cert, key
    running.stop()


async def test_mutual_tls_with_the_tls_settings(tls_server: tuple[str, Path, Path]) -> None:
    url, cert, key = tls_server
    settings = BaseSettings(nats_tls_ca=str(cert), nats_tls_cert=str(cert), nats_tls_key=str(key))
    nc = await nats.connect(url, allow_reconnect=False, **nats_auth.connect_options(settings))
    try:
        await nc.flush()
        assert nc.is_connected
    finally:
        await nc.close()
    # Without a client certificate the server refuses the connection: TLS is enforced.
    no_cert = nats_auth.connect_options(BaseSettings(nats_tls_ca=str(cert)))
    with pytest.raises((NatsError, OSError)):
        await nats.connect(url, allow_reconnect=False, connect_timeout=2, **no_cert)
