"""The executor a ClockAdapter installs (every run claimed in Redis first) and the runs in flight.

It is APScheduler's own ``ThreadPoolExecutor`` with two additions:

- ``submit_job`` asks the adapter to claim the run times first (lease token still ours, once-key
  free). The scheduler calls it while holding its job-store lock, so a drain that pauses the
  scheduler and then calls ``scheduler.get_jobs()`` (which takes that lock) knows that every run
  submitted before the pause is already registered as in flight.
- each scheduled run executes with its scheduled run time visible to the job through
  :func:`scheduled_run_time`, e.g. to build an idempotency key.

``InFlight`` holds the claimed runs until APScheduler's own events (executed, error, missed)
retire them; the executor itself retires only runs the pool failed to start.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED
from apscheduler.executors.base import run_job
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job

from drainctl.adapters.apscheduler_schedule import run_ms
from drainctl.adapters.base import JobStats, RunningJob

Claim = Callable[[Job, list[datetime]], list[datetime]]
Retire = Callable[[str, list[datetime]], None]
Covered = Callable[[int], bool]  # whether a run time (ms) gets the deploy grace

_current = threading.local()


def scheduled_run_time() -> datetime | None:
    """The scheduled run time of the clock job running in this thread (None outside a job)."""
    return getattr(_current, "run_time", None)


class ClockExecutor(ThreadPoolExecutor):  # type: ignore[misc]  # APScheduler ships no types
    """A thread pool executor that fires only the runs the adapter claims."""

    def __init__(
        self, claim: Claim, retire: Retire, covered: Covered, max_workers: int = 10
    ) -> None:
        super().__init__(max_workers)
        self._claim = claim
        self._retire = retire
        self._covered = covered

    def submit_job(self, job: Job, run_times: list[datetime]) -> None:
        """Claim, then submit what was granted; refused runs are dropped without an error."""
        allowed = self._claim(job, run_times)
        if not allowed:
            return
        try:
            super().submit_job(job, allowed)
        except BaseException:
            # Max instances reached (APScheduler skips the run and says so) or a broken pool.
            self._retire(job.id, allowed)
            raise

    def _do_submit_job(self, job: Job, run_times: list[datetime]) -> None:
        future = self._pool.submit(
            _run_each, job, job._jobstore_alias, run_times, self._logger.name, self._covered
        )
        future.add_done_callback(lambda done: self._done(job.id, run_times, done))

    def _done(self, job_id: str, run_times: list[datetime], future: Future[Any]) -> None:
        exc = future.exception()
        if exc is None:
            self._run_job_success(job_id, future.result())
            return
        self._run_job_error(job_id, exc, exc.__traceback__)
        self._retire(job_id, run_times)


@dataclass
class _Run:
    job_id: str
    name: str
    started: float = field(default_factory=time.monotonic)


class InFlight:
    """Runs claimed and not yet retired, keyed by (job id, run time in ms); counters for status.

    Every method expects the caller to hold ``cond`` (shared with the adapter, whose drain waits
    on it); retiring notifies it.
    """

    EVENTS = EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED

    def __init__(self, cond: threading.Condition) -> None:
        self.cond = cond
        self.runs: dict[tuple[str, int], _Run] = {}
        # One list per drain in progress, collecting the names of runs that finish.
        self.recorders: list[list[str]] = []
        self.stats = JobStats()
        self.missed = 0
        self._outcomes: dict[int, Callable[[Any, _Run], None]] = {
            EVENT_JOB_EXECUTED: self._executed,
            EVENT_JOB_ERROR: self._failed,
            EVENT_JOB_MISSED: self._missed,
        }

    def add(self, job: Job, run_times: list[datetime]) -> None:
        """Register claimed runs, before they are submitted."""
        for run_time in run_times:
            self.runs[(job.id, run_ms(run_time))] = _Run(job.id, job.name)

    def retire(self, job_id: str, run_times: list[datetime]) -> None:
        """Forget runs that will never report (never submitted, or the pool failed)."""
        for run_time in run_times:
            self.runs.pop((job_id, run_ms(run_time)), None)
        self.cond.notify_all()

    def on_event(self, event: Any) -> None:
        """An APScheduler executed/error/missed event: the run is over."""
        with self.cond:
            run = self.runs.pop((event.job_id, run_ms(event.scheduled_run_time)), None)
            if run is None:
                return
            self._outcomes[event.code](event, run)
            for finished in self.recorders:
                finished.append(run.name)
            self.cond.notify_all()

    def still_running(self) -> list[RunningJob]:
        """The runs in flight, with how long they have run."""
        now = time.monotonic()
        return [RunningJob(r.job_id, r.name, round(now - r.started, 3)) for r in self.runs.values()]

    def _executed(self, event: Any, run: _Run) -> None:
        self.stats.jobs_done += 1

    def _failed(self, event: Any, run: _Run) -> None:
        self.stats.jobs_done += 1
        self.stats.record_error(event.exception, run.name)

    def _missed(self, event: Any, run: _Run) -> None:
        self.missed += 1


class _DeployGraced:
    """The job as ``run_job`` sees it for a run the deploy delayed: no misfire limit of its own
    (the deploy grace, checked before, bounds it)."""

    misfire_grace_time = None

    def __init__(self, job: Job) -> None:
        self._job = job

    def __getattr__(self, name: str) -> Any:
        return getattr(self._job, name)

    def __str__(self) -> str:
        return str(self._job)


def _run_each(
    job: Job, jobstore_alias: str, run_times: list[datetime], logger_name: str, covered: Covered
) -> list[Any]:
    """APScheduler's ``run_job``, one run time at a time, with the run time made visible."""
    events: list[Any] = []
    for run_time in run_times:
        _current.run_time = run_time
        runnable = _DeployGraced(job) if covered(run_ms(run_time)) else job
        try:
            events += run_job(runnable, jobstore_alias, [run_time], logger_name)
        finally:
            _current.run_time = None
    return events
