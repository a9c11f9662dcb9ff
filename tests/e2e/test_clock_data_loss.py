"""The clock when Redis loses its data: a live holder and a same-release standby, as real
processes, against a redis-server restarted without data (scenarios: ``tests/clock_scenarios.py``;
``scripts/clock_data_loss_trials.py`` repeats them for the duplicate and miss counts)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clock_scenarios import TwoClocks, data_loss, data_loss_and_holder_killed
from tests.conftest import assert_no_lasting_keys
from tests.redis_server import RedisServer

pytestmark = pytest.mark.slow


@pytest.fixture
def clocks(redis_server: RedisServer, tmp_path: Path) -> Iterator[TwoClocks]:
    """Two clocks on a redis-server of their own (the test wipes it); the ledger elsewhere."""
    server = RedisServer().start()
    clocks = TwoClocks(server, redis_server.url, tmp_path)
    yield clocks
    clocks.close()
    assert_no_lasting_keys(server.url, clocks.app)
    server.cleanup()


def test_no_run_fires_twice_or_is_missed_when_redis_loses_its_data(clocks: TwoClocks):
    """Redis restarts empty: the holder, which held the lease, takes it back (the standby waits
    a lease TTL for it), restores from the last fire it remembers and catches up on the runs
    due meanwhile. Over the whole grid no run fired twice and none was missed."""
    outcome = data_loss(clocks)
    assert outcome.runs >= 40
    assert (outcome.duplicates, outcome.missed) == (0, 0)


def test_standby_never_refires_a_run_when_the_holder_dies_with_the_data(clocks: TwoClocks):
    """The holder is SIGKILLed as Redis restarts empty: the standby takes over after a lease
    TTL and fires nothing due before it noticed the loss (the holder may have fired it after
    the standby's last look, and nothing recorded it): no run fires twice. The runs due between
    the loss and its notice (one poll) are the price, counted by the trials script."""
    outcome = data_loss_and_holder_killed(clocks)
    assert outcome.runs >= 40
    assert outcome.duplicates == 0
