"""Shared fixtures: one private redis-server per session, a fresh app namespace per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from drainctl.config import Settings
from drainctl.keys import Keys
from tests.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own: to wipe, or to count every command it runs (the
    session server also serves what other tests left running)."""
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
def settings(redis_server: RedisServer, app: str) -> Iterator[Settings]:
    """Settings for a fresh app with fast heartbeats; afterwards, no key of it may lack a TTL."""
    yield Settings(redis_url=redis_server.url, app=app, heartbeat_interval=0.5, block_timeout=2.0)
    assert_no_lasting_keys(redis_server.url, app)


def assert_no_lasting_keys(url: str, app: str) -> None:
    """Every drainctl key of ``app`` expires or was deleted by its creator."""
    client = redis.Redis.from_url(url)
    try:
        keys = client.scan_iter(match=f"{Keys(app).base}*")
        lasting = [k for k in keys if client.ttl(k) == -1]
    finally:
        client.close()
    assert not lasting, f"drainctl keys without a TTL left behind: {lasting}"
