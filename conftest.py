"""Fixtures shared by every test tree."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chat_testkit.mongo import mongo_url
from chat_testkit.servers import Missing, NatsServer, RedisServer

#: Under CI=true a skip for a missing real part (anything but MongoDB) fails the run.
pytest_plugins = ["chat_testkit.strict_ci"]


@pytest.fixture(scope="session")
def mongodb_url() -> Iterator[str]:
    """One real MongoDB for the session, or a skip that names what is missing."""
    with mongo_url() as url:
        yield url


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real nats-server for unit-level tests (skipped, naming it, when absent)."""
    try:
        server = NatsServer(tmp_path_factory.mktemp("nats"))
    except Missing as exc:
        pytest.skip(str(exc))
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a private unix socket (skipped, naming it, when absent)."""
    try:
        server = RedisServer(tmp_path_factory.mktemp("redis"))
    except Missing as exc:
        pytest.skip(str(exc))
    yield server.url
    server.stop()
