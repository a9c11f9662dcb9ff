"""E2E fixtures: the test app released as v1 on a fresh local platform, the worker harness,
and host processes stopped after each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from drainctl.config import Settings
from tests.conftest import assert_no_lasting_keys
from tests.e2e.heroku import LocalHeroku
from tests.host_app import HostProcess
from tests.redis_server import RedisServer
from tests.workers import Harness


@pytest.fixture
def heroku(tmp_path: Path, redis_server: RedisServer, app: str) -> Iterator[LocalHeroku]:
    """The e2e app running v1 (one clock, one worker); stopped and cleaned up afterwards."""
    platform = LocalHeroku(tmp_path, redis_server.url, app)
    try:
        yield platform.start()
    finally:
        platform.stop()
    assert_no_lasting_keys(redis_server.url, app)


@pytest.fixture
def harness(settings: Settings, redis_client: redis.Redis, tmp_path: Path) -> Iterator[Harness]:
    """The test's app, with worker processes killed at the end."""
    harness = Harness(settings, redis_client, tmp_path)
    yield harness
    harness.close()


@pytest.fixture
def hosts() -> Iterator[list[HostProcess]]:
    """Host processes a test appends to (``hosts += [...]``): stopped when it ends."""
    started: list[HostProcess] = []
    yield started
    for host in started:
        host.stop()
