"""The generic adapter's bookkeeping, without Redis."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict
from typing import Any

from drainctl.adapters.base import DrainReport, JobStats, RunningJob
from drainctl.adapters.jobs import JobsAdapter
from drainctl.lifecycle import Lifecycle


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


def test_wakeup_runs_as_soon_as_a_drain_closes_the_gate():
    """The wakeup hook is called once per drain, after the gate is already closed."""
    seen: list[bool] = []
    jobs = JobsAdapter(wakeup=lambda: seen.append(jobs.accepting))
    jobs.drain(0)
    assert seen == [False]


def test_on_deadline_stops_late_jobs_which_are_reported_as_handed_back():
    """Jobs still running at the deadline go to on_deadline; once they hand themselves back,
    the drain is complete and lists them as handed back, not finished."""
    stop = threading.Event()
    jobs = JobsAdapter(on_deadline=lambda late: stop.set())
    running = jobs.start("slow")
    assert running is not None

    def work() -> None:
        with running:
            stop.wait(10)
            running.hand_back()

    worker = threading.Thread(target=work)
    worker.start()
    report = jobs.drain(0.05)
    worker.join()
    assert (report.finished, report.handed_back, report.still_running) == ([], ["slow"], [])
    assert report.complete
    assert jobs.status()["jobs_done"] == 0


def test_failure_from_elsewhere_is_counted():
    """A failure recorded with Job.fail (e.g. from a child process) counts as an error."""
    jobs = JobsAdapter()
    job = jobs.start("remote")
    assert job is not None
    with job:
        job.fail("JobFailed", "ValueError: bad input")
    assert jobs.status()["last_error"] == {
        "job": "remote",
        "type": "JobFailed",
        "message": "ValueError: bad input",
    }


def test_max_jobs_retires_the_worker_for_good():
    """After max_jobs the gate closes, the loop is told to exit, and resume does not reopen."""
    jobs = JobsAdapter(max_jobs=2)
    for name in ("a", "b"):
        job = jobs.start(name)
        assert job is not None
        with job:
            pass
    assert jobs.retired == "max_jobs reached (2 jobs)"
    assert not jobs.wait_until_accepting(timeout=5)  # returns at once: retired
    jobs.resume()
    assert jobs.start("c") is None


def test_max_memory_retires_when_resident_memory_is_above_the_limit():
    """A memory limit below the process's resident size retires the worker after a job."""
    jobs = JobsAdapter(max_memory_mb=1)
    job = jobs.start("a")
    assert job is not None
    with job:
        pass
    assert jobs.retired is not None
    assert jobs.retired.startswith("max_memory_mb reached")


def test_failing_hook_does_not_break_the_drain():
    """A wakeup hook that raises is logged; the drain still completes."""

    def broken() -> None:
        raise RuntimeError("boom")

    assert JobsAdapter(wakeup=broken).drain(0).complete


def test_worker_options_default_the_process_type_to_worker():
    """A framework worker started without DYNO or DRAINCTL_PROCESS_TYPE registers as a worker;
    an explicit process type is kept."""
    from drainctl.adapters.base import WorkerOptions
    from drainctl.config import Settings

    assert WorkerOptions(Settings(app="a")).listener_settings().process_type == "worker"
    explicit = Settings(app="a", process_type="urgent")
    assert WorkerOptions(explicit).listener_settings().process_type == "urgent"


def test_counters_of_the_loop_show_in_the_status():
    """A loop's own counters (e.g. jobs recovered from it, ``jobs_lost``) join the heartbeat."""
    adapter = JobsAdapter()
    assert "jobs_lost" not in adapter.status()
    adapter.count("jobs_lost")
    adapter.count("jobs_lost")
    assert adapter.status()["jobs_lost"] == 2


def test_reports_as_dicts_hold_every_field_and_copy_what_they_hold():
    """The hand-built dicts (the reply path's) say what ``dataclasses.asdict`` says, and a later
    change to the report or counters does not reach a dict already handed out."""
    report = DrainReport(["a"], ["b"], [RunningJob("1", "slow", 0.5)], 1.5, aborted=True)
    stats = JobStats(3, 1, {"job": "x", "type": "ValueError", "message": "m"})
    report_dict, stats_dict = report.as_dict(), stats.as_dict()
    assert report_dict == asdict(report) | {"complete": False}
    assert stats_dict == asdict(stats)
    report.finished.append("c")
    assert stats.last_error is not None
    stats.last_error["job"] = "y"
    assert report_dict["finished"] == ["a"]
    assert stats_dict["last_error"]["job"] == "x"


def test_drain_if_idle_closes_the_gate_only_with_nothing_in_flight():
    """Idle: the drain is over at once. Busy: None, and the gate stays open."""
    jobs = JobsAdapter()
    job = jobs.start("busy")
    assert job is not None
    assert jobs.drain_if_idle() is None
    assert jobs.accepting
    with job:
        pass
    report = jobs.drain_if_idle()
    assert report is not None
    assert report.complete
    assert not jobs.accepting
    assert jobs.start("late") is None


def test_drain_if_idle_declines_with_a_wakeup_hook():
    """Cutting a blocking pop short (RQ, LoopWorker) is I/O that may wait: not on the caller's
    thread."""
    jobs = JobsAdapter(wakeup=lambda: None)
    assert jobs.drain_if_idle() is None
    assert jobs.accepting


class Noting(JobsAdapter):
    """Notes the thread each drain ran on."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threads: list[str] = []

    def drain(self, deadline: float) -> DrainReport:
        self.threads.append(threading.current_thread().name)
        return super().drain(deadline)

    def drain_if_idle(self) -> DrainReport | None:
        report = super().drain_if_idle()
        if report is not None:
            self.threads.append(threading.current_thread().name)
        return report


class DrainOnly(Noting):
    """Overrides drain below drain_if_idle: its drain may do more, so it always runs."""

    def drain(self, deadline: float) -> DrainReport:
        return super().drain(deadline)


def drained_on(adapter: JobsAdapter) -> str:
    lifecycle = Lifecycle(adapter, time.time)
    try:
        report = lifecycle.drain(5).result(timeout=5)
    finally:
        lifecycle.close()
    assert report.complete
    assert not adapter.accepting
    assert isinstance(adapter, Noting)
    (thread,) = adapter.threads
    return "caller" if thread == threading.current_thread().name else thread


def test_an_idle_drain_runs_at_once_on_the_callers_thread_only_where_it_may():
    """Idle and able: on the caller's thread. A wakeup hook, or a subclass overriding drain
    below drain_if_idle: on the drain thread."""
    assert drained_on(Noting()) == "caller"
    assert drained_on(Noting(wakeup=lambda: None)).startswith("drainctl-drain")
    assert drained_on(DrainOnly()).startswith("drainctl-drain")


class SlowToDecline(JobsAdapter):
    """Takes a while to find it is busy, then declines: the window a later drain could use."""

    def __init__(self) -> None:
        super().__init__()
        self.deadlines: list[float] = []
        self.deciding = threading.Event()
        self.decide = threading.Event()

    def drain(self, deadline: float) -> DrainReport:
        self.deadlines.append(deadline)
        return super().drain(deadline)

    def drain_if_idle(self) -> DrainReport | None:
        self.deciding.set()
        self.decide.wait(5)
        return None


def test_a_later_drain_never_overtakes_one_being_tried_at_once():
    """Drain A is being tried at once when drain B arrives on another thread (a request beside
    a fence found by the beat): B waits, and A reaches the adapter first."""
    adapter = SlowToDecline()
    lifecycle = Lifecycle(adapter, time.time)
    futures = []
    try:
        first = threading.Thread(target=lambda: futures.append(lifecycle.drain(6)))
        first.start()
        assert adapter.deciding.wait(5)
        second = threading.Thread(target=lambda: futures.append(lifecycle.drain(5)))
        second.start()
        time.sleep(0.05)  # B's chance to overtake, were it not held back
        adapter.decide.set()
        first.join(5)
        second.join(5)
        for future in futures:
            future.result(timeout=5)
    finally:
        lifecycle.close()
    assert adapter.deadlines == [6.0, 5.0]
