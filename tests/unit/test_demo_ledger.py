"""scripts/demo_ledger.py: the figures of the demo's JSON lines, from ledgers written by hand."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import fakeredis
import pytest

from examples.demoapp import ledger
from scripts.demo_ledger import Ledger

APP = "t"
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def book() -> Iterator[Ledger]:
    """The ledgers of app ``t`` in a fake Redis."""
    client = fakeredis.FakeRedis()
    yield Ledger(client, APP)
    client.close()


def test_job_counts_tell_lost_duplicated_cut_off_and_rerun(book: Ledger) -> None:
    """A job killed twice and never finished is lost, cut off twice and re-run; one finished
    twice is duplicated and re-run; one run once counts only as completed."""
    for job_id in ("once", "twice", "killed"):
        ledger.record_enqueued(book.client, APP, [job_id])
    starts = {"once": 1, "twice": 2, "killed": 2}
    runs = {"once": 1, "twice": 2}
    book.client.hset(ledger.starts_key(APP), mapping=starts)
    book.client.hset(ledger.runs_key(APP), mapping=runs)
    assert book.job_counts() == {
        "jobs_enqueued": 3,
        "jobs_completed": 2,
        "jobs_lost": 1,
        "jobs_duplicated": 1,
        "jobs_cut_off": 2,
        "jobs_rerun": 2,
    }


def test_run_counts_tell_missed_and_duplicated_runs_up_to_the_cutoff(book: Ledger) -> None:
    """Runs are expected at every grid point from a job's first run to the cut-off: a point with
    no finished run is missed (also one that started and was killed), a point finished twice is
    duplicated once, and runs after the cut-off are not counted."""
    ticks = {0: 1, 1: 1, 3: 2, 4: 1, 9: 1}  # second -> runs finished; 2 missing; 9 after cut-off
    for second, n in ticks.items():
        label = ledger.run_label("tick", T0 + timedelta(seconds=second))
        book.client.hset(ledger.fires_key(APP), label, n)
    killed = ledger.run_label("report", T0)  # started, never finished
    book.client.hset(ledger.fire_starts_key(APP), killed, 1)
    cutoff = (T0 + timedelta(seconds=4.5)).timestamp()
    assert book.run_counts({"tick": 1.0, "report": 5.0}, cutoff) == {
        "runs_expected": 6,  # tick at 0..4, report at 0
        "runs_fired": 4,
        "runs_missed": 2,  # tick at 2, report at 0
        "runs_duplicated": 1,
    }
