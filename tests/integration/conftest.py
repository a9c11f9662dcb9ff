"""Fixtures for integration tests: listeners started in threads and stopped afterwards, and
a restricted ACL user."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from drainctl.adapters.base import Adapter
from drainctl.config import Settings
from drainctl.listener import ControlListener
from tests.redis_server import RedisServer

StartListener = Callable[..., ControlListener]


@pytest.fixture
def start_listener(settings: Settings) -> Iterator[StartListener]:
    """Start a listener (in this process) with the test's settings; all are stopped at the end."""
    started: list[ControlListener] = []

    def start(
        process_type: str = "worker", adapter: Adapter | None = None, **changes: object
    ) -> ControlListener:
        listener = ControlListener(
            adapter=adapter, settings=settings.replace(process_type=process_type, **changes)
        )
        started.append(listener.start())
        return listener

    yield start
    for listener in started:
        listener.stop()


@pytest.fixture
def restricted_user(redis_server: RedisServer) -> Iterator[str]:
    """An ACL user (password ``pw``) with GET but not the registry's ZRANGE, nor INFO nor ACL
    DRYRUN; its name."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    admin = redis.Redis.from_url(redis_server.url)
    admin.execute_command(
        f"ACL SETUSER {name} on >pw resetkeys ~drainctl:* -@all +time +evalsha +script|load +get"
    )
    yield name
    admin.execute_command(f"ACL DELUSER {name}")
    admin.close()
