"""A SIGTERMed DrainableWorker shows RQ's warm shutdown, as rq.Worker does, and exits 0."""

from __future__ import annotations

import signal

import pytest
from rq import Worker

from tests.workers import Harness, wait_for

pytestmark = pytest.mark.slow


def test_sigterm_records_the_warm_shutdown_in_rq(harness: Harness) -> None:
    """While the job in progress finishes, RQ's worker hash carries shutdown_requested_date
    (what `rq info` and dashboards read); a second SIGTERM does not cut the job short; the
    worker exits 0 and the job ran once."""
    worker = harness.start("rq")
    (job_id,) = harness.push("rq", [1.5])
    wait_for(lambda: worker.doc()["in_flight"] >= 1, 10, "the job to start")
    worker.signal(signal.SIGTERM)
    rq_worker = next(w for w in Worker.all(connection=harness.redis) if w.pid == worker.pid)
    date = wait_for(lambda: rq_worker.shutdown_requested_date, 10, "the shutdown date")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.log_text()
    assert harness.runs() == {job_id: 1}
    assert date.year >= 2025
    assert "warm shut down requested" in worker.log_text()


def test_sigterm_past_the_deadline_says_the_job_was_handed_back(harness: Harness) -> None:
    """A job still running at the SIGTERM deadline (grace 3 s - margin 1 s) is put back, and
    the worker's last line says so instead of a bare "complete"."""
    worker = harness.start("rq")
    harness.push("rq", [6.0])
    wait_for(lambda: worker.doc()["in_flight"] >= 1, 10, "the job to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.log_text()
    assert "SIGTERM: drained (complete, 1 handed back); exiting" in worker.log_text()
    assert harness.runs() == {}
