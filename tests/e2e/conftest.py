"""E2E fixtures: the test app released as v1 on a fresh local platform."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import assert_no_lasting_keys
from tests.e2e.heroku import LocalHeroku
from tests.redis_server import RedisServer


@pytest.fixture
def heroku(tmp_path: Path, redis_server: RedisServer, app: str) -> Iterator[LocalHeroku]:
    """The e2e app running v1 (one clock, one worker); stopped and cleaned up afterwards."""
    platform = LocalHeroku(tmp_path, redis_server.url, app)
    try:
        yield platform.start()
    finally:
        platform.stop()
    assert_no_lasting_keys(redis_server.url, app)
