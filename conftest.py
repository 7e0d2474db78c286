"""Fixtures shared by every test tree."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chat_testkit.mongo import mongo_url


@pytest.fixture(scope="session")
def mongodb_url() -> Iterator[str]:
    """One real MongoDB for the session, or a skip that names what is missing."""
    with mongo_url() as url:
        yield url
