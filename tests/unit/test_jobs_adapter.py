"""The generic adapter's bookkeeping, without Redis."""

from __future__ import annotations

import threading
import time

from drainctl.adapters.jobs import JobsAdapter


def test_start_refuses_once_draining_and_reports_hand_back():
    """A job that slipped in after the drain began is refused and reported as handed back."""
    jobs = JobsAdapter()
    running = jobs.start("a")
    assert running is not None
    results = []
    drainer = threading.Thread(target=lambda: results.append(jobs.drain(5)))
    drainer.start()
    while jobs.accepting:
        time.sleep(0.001)
    assert jobs.start("b") is None
    with running:
        pass
    drainer.join()
    report = results[0]
    assert (report.finished, report.handed_back, report.still_running) == (["a"], ["b"], [])
    assert report.complete


def test_failing_job_is_counted_not_raised():
    """An exception inside a job is swallowed, counted and kept as the last error."""
    jobs = JobsAdapter()
    for name in ("x", "y"):
        job = jobs.start(name)
        assert job is not None
        with job:
            raise KeyError(name)
    status = jobs.status()
    assert (status["jobs_done"], status["errors"], status["in_flight"]) == (2, 2, 0)
    assert status["last_error"] == {"job": "y", "type": "KeyError", "message": "'y'"}


def test_drain_with_nothing_in_flight_is_immediate_and_resume_reopens():
    """Idle, a drain completes at once; resume lets work in again."""
    jobs = JobsAdapter()
    report = jobs.drain(10)
    assert report.complete
    assert report.duration_s < 1
    assert not jobs.wait_until_accepting(timeout=0.01)
    jobs.resume()
    assert jobs.wait_until_accepting(timeout=0.01)
    assert jobs.start("z") is not None
