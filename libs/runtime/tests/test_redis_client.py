"""Redis settings: a URL, or sentinels and a service name (`CHAT_REDIS_*`)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.sentinel import SentinelConnectionPool

from chat_runtime.redis_client import DEFAULT_MASTER, connect_redis, primary_locator, url_options
from chat_runtime.settings import RedisSettings, SettingsError, load_settings


def test_sentinels_are_a_comma_separated_list_of_host_port() -> None:
    settings = load_settings(
        RedisSettings,
        {"CHAT_REDIS_SENTINELS": "10.0.0.1:26379, sentinel-2.redis:26379,[::1]:26380"},
    )
    assert settings.redis_sentinels == ["10.0.0.1:26379", "sentinel-2.redis:26379", "[::1]:26380"]
    assert settings.redis_sentinel_master == DEFAULT_MASTER
    with pytest.raises(SettingsError, match="CHAT_REDIS_SENTINELS: 'redis-1' is not host:port"):
        load_settings(RedisSettings, {"CHAT_REDIS_SENTINELS": "redis-1"})


def test_the_url_lends_its_password_database_and_tls_to_the_primary() -> None:
    assert url_options("redis://127.0.0.1:6379/0") == {"db": 0}
    assert url_options("rediss://:s3cret@ignored:6380/2?ssl_cert_reqs=none") == {
        "password": "s3cret",
        "db": 2,
        "ssl": True,
        "ssl_cert_reqs": "none",
    }
    assert url_options("redis://app:pw@ignored") == {"password": "pw", "username": "app"}


async def test_without_sentinels_the_url_is_the_server() -> None:
    settings = RedisSettings(redis_url="redis://127.0.0.1:6399/3")
    client = connect_redis(settings)
    assert client.connection_pool.connection_kwargs["port"] == 6399
    assert client.connection_pool.connection_kwargs["db"] == 3
    assert primary_locator(settings) is None
    await client.aclose()


async def test_with_sentinels_the_primary_comes_from_them() -> None:
    settings = RedisSettings(
        redis_url="redis://:pw@ignored:1/4",
        redis_sentinels=["127.0.0.1:26379"],
        redis_sentinel_master="chat",
    )
    client: Redis = connect_redis(settings, socket_timeout=2.0)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "chat"
    assert (pool.connection_kwargs["db"], pool.connection_kwargs["password"]) == (4, "pw")
    assert pool.connection_kwargs["socket_timeout"] == 2.0
    assert primary_locator(settings) is not None
    await client.aclose()


async def test_a_new_connection_sends_nothing_the_server_refuses(redis_url: str) -> None:
    # redis-py's default CLIENT SETINFO is refused by Redis before 7.2 (the test
    # servers' 7.0): each refusal is an error in the server's stats and a reference
    # cycle in ours. On 7.2 and later, the connection shows no library name instead.
    settings = RedisSettings(redis_url=redis_url)
    admin, client = connect_redis(settings), connect_redis(settings)
    try:
        await admin.config_resetstat()
        assert await client.ping()
        info = await client.client_info()
        assert not info.get("lib-name")
        assert await admin.info("errorstats") == {}
    finally:
        await client.aclose()
        await admin.aclose()
