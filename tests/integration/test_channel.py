"""Request/reply between a ControlClient and real listeners over a real redis-server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from drainctl.channel import ControlClient
from drainctl.config import Settings
from drainctl.listener import ControlListener
from drainctl.protocol import Command


@pytest.fixture
def listeners(settings: Settings) -> Iterator[list[ControlListener]]:
    started: list[ControlListener] = []
    yield started
    for listener in started:
        listener.stop()


def start(settings: Settings, started: list[ControlListener], process_type: str, n: int) -> None:
    for _ in range(n):
        started.append(
            ControlListener(settings=settings.replace(process_type=process_type)).start()
        )


@pytest.mark.parametrize("n", [1, 4, 50])
def test_ping_reaches_every_listener(
    settings: Settings, listeners: list[ControlListener], n: int
) -> None:
    """Every live listener answers once, and the requester names each of them."""
    start(settings, listeners, "worker", n)
    client = ControlClient(settings)
    outcome = client.send(Command.PING, timeout=5)
    assert outcome.ok
    assert sorted(r.instance_id for r in outcome.replies) == sorted(
        listener.identity.instance_id for listener in listeners
    )
