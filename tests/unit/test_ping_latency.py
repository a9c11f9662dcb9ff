"""Ping shows each instance's own round trip, not the time its batch of replies was read."""

from __future__ import annotations

import pytest

from drainctl.channel import own_latencies
from drainctl.protocol import Reply


def reply(instance_id: str, **data: object) -> Reply:
    return Reply(request_id="r", instance={"instance_id": instance_id}, state="running", data=data)


def test_a_batch_is_spread_by_the_reply_stamps() -> None:
    """Read together 20 ms after sending, replies written 10 and 5 ms before the last one
    took 10 and 15 ms; the last one the whole 20 ms."""
    batch = [reply("a", replied_at=100.000), reply("b", replied_at=100.005),
             reply("c", replied_at=100.010)]  # fmt: skip
    latencies = own_latencies(batch, 0.020)
    assert latencies == pytest.approx({"a": 0.010, "b": 0.015, "c": 0.020})


def test_without_stamps_or_alone_the_arrival_counts() -> None:
    """A listener of an older drainctl sends no stamp: the batch's arrival for all; never < 0."""
    assert own_latencies([reply("a"), reply("b", replied_at=1.0)], 0.02) == {"a": 0.02, "b": 0.02}
    assert own_latencies([reply("a", replied_at=5.0)], 0.02) == {"a": 0.02}
    skewed = own_latencies([reply("a", replied_at=0.0), reply("b", replied_at=9.0)], 0.02)
    assert skewed == {"a": 0.0, "b": 0.02}
