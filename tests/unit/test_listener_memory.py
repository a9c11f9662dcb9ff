"""A heartbeat's memory figure is read from /proc at most once per heartbeat interval: a fleet
answering a drain at once must not pay for it in every reply."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from drainctl.listener import _Memory


def test_memory_is_read_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    rss = [10 * 1024 * 1024]
    reads = []

    def memory_info() -> SimpleNamespace:
        reads.append(now[0])
        return SimpleNamespace(rss=rss[0])

    memory = _Memory(every=5.0, clock=lambda: now[0])
    monkeypatch.setattr(memory, "_process", SimpleNamespace(memory_info=memory_info))

    assert memory.mb() == 10.0
    rss[0] = 20 * 1024 * 1024
    now[0] += 4.9
    assert memory.mb() == 10.0  # within the interval: the last reading
    now[0] += 0.1
    assert memory.mb() == 20.0  # an interval later: read again
    assert reads == [100.0, 105.0]
