"""The generic adapter for hand-written work loops.

The loop asks before each job and wraps it, so the adapter always knows what is in flight::

    jobs = JobsAdapter()
    with ControlListener.from_env(adapter=jobs):
        while True:
            if not jobs.wait_until_accepting(timeout=1.0):
                continue                      # drained: take nothing
            payload = queue.pop(timeout=1.0)
            if payload is None:
                continue
            job = jobs.start(payload.id)      # None if a drain began while we were popping
            if job is None:
                queue.hand_back(payload)
                continue
            with job:                         # counted in flight; errors logged, not raised
                process(payload)

``start`` checks and registers in one step under a lock, so a drain can never miss a job that
slipped in between "may I?" and "I have begun".
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from types import TracebackType
from typing import Any

from drainctl.adapters.base import DrainReport, JobStats, RunningJob

logger = logging.getLogger(__name__)


class Job:
    """A job in flight; use it as a context manager around the work."""

    def __init__(self, adapter: JobsAdapter, job_id: str, name: str) -> None:
        self.adapter = adapter
        self.id = job_id
        self.name = name
        self.started = time.monotonic()

    def __enter__(self) -> Job:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self.adapter._finish(self, exc)
        # A failing job must not take the worker down; KeyboardInterrupt and SystemExit still do.
        return isinstance(exc, Exception)


class JobsAdapter:
    """Counts jobs in flight and gates new ones; drains by waiting for the count to reach zero."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._accepting = True
        self._in_flight: dict[str, Job] = {}
        self._ids = itertools.count(1)
        self._stats = JobStats()
        self._draining = False
        self._finished_in_drain: list[str] = []
        self._refused_in_drain: list[str] = []

    @property
    def accepting(self) -> bool:
        """Whether the loop may take new work now."""
        return self._accepting

    def wait_until_accepting(self, timeout: float | None = None) -> bool:
        """Block while drained (up to ``timeout``); True when work may be taken."""
        with self._cond:
            return self._cond.wait_for(lambda: self._accepting, timeout)

    def start(self, name: str = "job") -> Job | None:
        """Register a job in flight, or return None (and note it as handed back) when draining."""
        with self._cond:
            if not self._accepting:
                if self._draining:
                    self._refused_in_drain.append(name)
                return None
            job = Job(self, str(next(self._ids)), name)
            self._in_flight[job.id] = job
            return job

    def _finish(self, job: Job, exc: BaseException | None) -> None:
        if isinstance(exc, Exception):
            logger.error("job %s failed", job.name, exc_info=exc)
        with self._cond:
            self._in_flight.pop(job.id, None)
            self._stats.jobs_done += 1
            if isinstance(exc, Exception):
                self._stats.record_error(exc, job.name)
            if self._draining:
                self._finished_in_drain.append(job.name)
            self._cond.notify_all()

    def drain(self, deadline: float) -> DrainReport:
        """Stop new work now; return when nothing is in flight, on resume, or at the deadline."""
        started = time.monotonic()
        with self._cond:
            self._accepting = False
            self._draining = True
            self._finished_in_drain, self._refused_in_drain = [], []
            self._cond.wait_for(lambda: not self._in_flight or self._accepting, deadline)
            now = time.monotonic()
            report = DrainReport(
                finished=list(self._finished_in_drain),
                handed_back=list(self._refused_in_drain),
                still_running=[
                    RunningJob(job.id, job.name, round(now - job.started, 3))
                    for job in self._in_flight.values()
                ],
                duration_s=round(now - started, 4),
                aborted=self._accepting,
            )
            self._draining = False
            return report

    def resume(self) -> None:
        """Accept work again (and release a drain still waiting)."""
        with self._cond:
            self._accepting = True
            self._cond.notify_all()

    def status(self) -> dict[str, Any]:
        """In-flight count and job counters for the heartbeat."""
        with self._cond:
            return {"in_flight": len(self._in_flight), **self._stats.as_dict()}
