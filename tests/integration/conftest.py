"""Fixtures for integration tests: listeners started in threads and stopped afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from drainctl.adapters.base import Adapter
from drainctl.config import Settings
from drainctl.listener import ControlListener

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
