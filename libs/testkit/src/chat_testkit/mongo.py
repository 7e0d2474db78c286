"""A real MongoDB for store contract tests, or a skip that names what is missing.

Order: `CHAT_MONGODB_URL` when set; else a testcontainers MongoDB when a Docker engine
answers; else `pytest.skip` with the reason. There is no fake MongoDB.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

SKIP_REASON = (
    "MongoDB: CHAT_MONGODB_URL is not set and no Docker engine answered for testcontainers"
)


def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
    except Exception:  # noqa: BLE001 - any failure means "no engine", which is the answer
        return False
    return True


@contextmanager
def mongo_url() -> Iterator[str]:
    """Yield a MongoDB URL for the session, or skip the requesting test with the reason."""
    url = os.environ.get("CHAT_MONGODB_URL")
    if url:
        yield url
        return
    if not _docker_answers():
        pytest.skip(SKIP_REASON)
    from testcontainers.mongodb import MongoDbContainer

    with MongoDbContainer("mongo:7") as container:
        yield container.get_connection_url()


def unique_db_name(prefix: str = "chat_test") -> str:
    """A fresh database name so test runs never see each other's data."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"
