"""The executor a ClockAdapter installs: every run is claimed in Redis before it is submitted.

It is APScheduler's own ``ThreadPoolExecutor`` with two additions:

- ``submit_job`` asks the adapter to claim the run times first (lease token still ours, once-key
  free). The scheduler calls it while holding its job-store lock, so a drain that pauses the
  scheduler and then calls ``scheduler.get_jobs()`` (which takes that lock) knows that every run
  submitted before the pause is already registered as in flight.
- each scheduled run executes with its scheduled run time visible to the job through
  :func:`scheduled_run_time`, e.g. to build an idempotency key.

Completion is reported by APScheduler's own events (executed, error, missed), which the adapter
listens to; this module only retires runs the pool itself failed to run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime
from typing import Any

from apscheduler.executors.base import run_job
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job

Claim = Callable[[Job, list[datetime]], list[datetime]]
Retire = Callable[[str, list[datetime]], None]

_current = threading.local()


def scheduled_run_time() -> datetime | None:
    """The scheduled run time of the clock job running in this thread (None outside a job)."""
    return getattr(_current, "run_time", None)


class ClockExecutor(ThreadPoolExecutor):  # type: ignore[misc]  # APScheduler ships no types
    """A thread pool executor that fires only the runs the adapter claims."""

    def __init__(self, claim: Claim, retire: Retire, max_workers: int = 10) -> None:
        super().__init__(max_workers)
        self._claim = claim
        self._retire = retire

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
            _run_each, job, job._jobstore_alias, run_times, self._logger.name
        )
        future.add_done_callback(lambda done: self._done(job.id, run_times, done))

    def _done(self, job_id: str, run_times: list[datetime], future: Future[Any]) -> None:
        exc = future.exception()
        if exc is None:
            self._run_job_success(job_id, future.result())
            return
        self._run_job_error(job_id, exc, exc.__traceback__)
        self._retire(job_id, run_times)


def _run_each(
    job: Job, jobstore_alias: str, run_times: list[datetime], logger_name: str
) -> list[Any]:
    """APScheduler's ``run_job``, one run time at a time, with the run time made visible."""
    events: list[Any] = []
    for run_time in run_times:
        _current.run_time = run_time
        try:
            events += run_job(job, jobstore_alias, [run_time], logger_name)
        finally:
            _current.run_time = None
    return events
