"""Shared fixtures: one private redis-server per session, a fresh app namespace per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from drainctl.config import Settings
from tests.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture
def app() -> str:
    """A fresh app name, so tests never see each other's keys (no FLUSHALL)."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(redis_server: RedisServer, app: str) -> Settings:
    """Fast heartbeats so registry tests do not wait."""
    return Settings(redis_url=redis_server.url, app=app, heartbeat_interval=0.5, block_timeout=2.0)


@pytest.fixture(autouse=True)
def no_key_without_ttl(request: pytest.FixtureRequest) -> Iterator[None]:
    """After every test that used Redis, no drainctl key of its app may lack a TTL."""
    yield
    if "app" not in request.fixturenames or "redis_server" not in request.fixturenames:
        return
    app = request.getfixturevalue("app")
    server = request.getfixturevalue("redis_server")
    client = redis.Redis.from_url(server.url)
    try:
        lasting = [
            key for key in client.scan_iter(match=f"drainctl:{app}:*") if client.ttl(key) == -1
        ]
    finally:
        client.close()
    assert not lasting, f"drainctl keys without a TTL left behind: {lasting}"
