"""What a listener knows its registry entry holds: a woken beat skips a write a reply carried,
and never trusts writes that were in flight together (they may land in either order)."""

from __future__ import annotations

from drainctl.listener import _EntryWrites


def doc(state: str, beat_at: float = 0.0) -> dict[str, object]:
    return {"instance_id": "i1", "state": state, "beat_at": beat_at, "memory_mb": beat_at}


def test_a_landed_write_is_held_beat_time_and_memory_aside() -> None:
    entry = _EntryWrites()
    write = entry.start(lambda: doc("drained"))
    assert entry.done(write, landed=True)
    assert entry.start_if_changed(lambda: doc("drained", beat_at=9.0)) is None
    changed = entry.start_if_changed(lambda: doc("running"))
    assert changed is not None
    assert changed["state"] == "running"


def test_a_write_that_did_not_land_is_not_held() -> None:
    entry = _EntryWrites()
    write = entry.start(lambda: doc("drained"))
    assert not entry.done(write, landed=False)
    assert entry.start_if_changed(lambda: doc("drained")) is not None


def test_writes_in_flight_together_are_never_trusted() -> None:
    entry = _EntryWrites()
    first = entry.start(lambda: doc("drained"))
    second = entry.start(lambda: doc("running"))
    assert not entry.done(second, landed=True)
    assert not entry.done(first, landed=True)
    # Once alone again, a write is trusted.
    alone = entry.start_if_changed(lambda: doc("running"))
    assert alone is not None
    assert entry.done(alone, landed=True)
    assert entry.start_if_changed(lambda: doc("running")) is None
