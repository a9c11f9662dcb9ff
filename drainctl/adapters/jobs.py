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

Three hooks let a framework adapter (RQ, Celery) or an ambitious loop go further: ``wakeup`` is
called as soon as a drain closes the gate (to cut short a blocking pop), ``on_deadline`` with the
jobs still running when the deadline passes (to stop them and hand them back, see
``Job.hand_back``), and ``max_jobs``/``max_memory_mb`` retire the worker (``retired``) so the loop
can exit and be restarted fresh.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from drainctl.adapters.base import DrainReport, JobStats, RunningJob
from drainctl.adapters.recycle import Recycler

logger = logging.getLogger(__name__)

# How long a drain waits for jobs stopped by ``on_deadline`` to hand themselves back.
STOP_GRACE = 10.0


@dataclass
class _DrainLog:
    """What happened to jobs during one drain."""

    finished: list[str] = field(default_factory=list)
    handed_back: list[str] = field(default_factory=list)


class Job:
    """A job in flight; use it as a context manager around the work."""

    def __init__(self, adapter: JobsAdapter, job_id: str, name: str) -> None:
        self.adapter = adapter
        self.id = job_id
        self.name = name
        self.started = time.monotonic()
        self.handed_back = False
        self.failure: tuple[str, str] | None = None

    def hand_back(self) -> None:
        """Mark the job as given back to its queue (to run again later), not as finished."""
        self.handed_back = True

    def fail(self, kind: str, message: str) -> None:
        """Record a failure that was not raised here (e.g. it happened in a child process)."""
        self.failure = (kind, message)

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

    def __init__(
        self,
        *,
        wakeup: Callable[[], None] | None = None,
        on_deadline: Callable[[list[Job]], None] | None = None,
        max_jobs: int | None = None,
        max_memory_mb: float | None = None,
    ) -> None:
        self._cond = threading.Condition()
        self._accepting = True
        self._in_flight: dict[str, Job] = {}
        self._ids = itertools.count(1)
        self._stats = JobStats()
        # One log per drain in progress: a SIGTERM drain beside a requested one must not reset
        # the other's lists.
        self._logs: list[_DrainLog] = []
        self._wakeup = wakeup
        self._on_deadline = on_deadline
        self._recycler = Recycler(max_jobs, max_memory_mb)
        self._retired: str | None = None
        self._counters: dict[str, int] = {}

    @property
    def accepting(self) -> bool:
        """Whether the loop may take new work now."""
        return self._accepting

    @property
    def retired(self) -> str | None:
        """Why the worker retired (recycling, SIGTERM), or None: once set, the loop should exit."""
        return self._retired

    def wait_until_accepting(self, timeout: float | None = None) -> bool:
        """Block while drained (up to ``timeout``); True when work may be taken.

        Returns False at once when the worker has retired.
        """
        with self._cond:
            self._cond.wait_for(lambda: self._accepting or self._retired is not None, timeout)
            return self._accepting

    def start(self, name: str = "job") -> Job | None:
        """Register a job in flight, or return None (and note it as handed back) when draining."""
        with self._cond:
            if not self._accepting:
                for log in self._logs:
                    log.handed_back.append(name)
                return None
            job = Job(self, str(next(self._ids)), name)
            self._in_flight[job.id] = job
            return job

    def retire(self, reason: str) -> None:
        """Close the gate for good (no resume reopens it) and wake the loop so it can exit."""
        with self._cond:
            if self._retired is None:
                logger.warning("worker retiring: %s", reason)
                self._retired = reason
            self._accepting = False
            self._cond.notify_all()
        self._call(self._wakeup)

    def _finish(self, job: Job, exc: BaseException | None) -> None:
        if isinstance(exc, Exception):
            logger.error("job %s failed", job.name, exc_info=exc)
        with self._cond:
            self._in_flight.pop(job.id, None)
            self._record(job, exc)
            self._cond.notify_all()
            jobs_done = self._stats.jobs_done
        if self._recycler.enabled and self._retired is None:
            reason = self._recycler.reason(jobs_done)
            if reason is not None:
                self.retire(reason)

    def _record(self, job: Job, exc: BaseException | None) -> None:
        if job.handed_back:
            for log in self._logs:
                log.handed_back.append(job.name)
            return
        self._stats.jobs_done += 1
        if isinstance(exc, Exception):
            self._stats.record_error(exc, job.name)
        elif job.failure is not None:
            self._stats.record_failure(job.name, *job.failure)
        for log in self._logs:
            log.finished.append(job.name)

    def drain(self, deadline: float) -> DrainReport:
        """Stop new work now; return when nothing is in flight, on resume, or at the deadline.

        With ``on_deadline``, jobs still running at the deadline are passed to it to be stopped
        and handed back, and the drain waits up to ``STOP_GRACE`` more for them to leave.
        """
        started = time.monotonic()
        log = _DrainLog()
        with self._cond:
            self._accepting = False
            self._logs.append(log)
        self._call(self._wakeup)
        late = self._wait_idle(deadline)
        if late and self._on_deadline is not None:
            self._call(self._on_deadline, late)
            self._wait_idle(STOP_GRACE)
        with self._cond:
            now = time.monotonic()
            self._logs.remove(log)
            return DrainReport(
                finished=log.finished,
                handed_back=log.handed_back,
                still_running=[
                    RunningJob(job.id, job.name, round(now - job.started, 3))
                    for job in self._in_flight.values()
                ],
                duration_s=round(now - started, 4),
                aborted=self._accepting,
            )

    def drain_if_idle(self) -> DrainReport | None:
        """Close the gate if nothing is in flight (the drain is then over); else None.

        Also None with a ``wakeup`` hook: cutting a blocking pop short is a Redis round trip
        that may wait (RQ, LoopWorker), and this runs on the listener's serve or beat thread.
        """
        if self._wakeup is not None:
            return None
        with self._cond:
            if self._in_flight:
                return None
            self._accepting = False
        return DrainReport()

    def _wait_idle(self, timeout: float) -> list[Job]:
        """Wait for nothing in flight (or a resume); the jobs still running, if drained."""
        with self._cond:
            self._cond.wait_for(lambda: not self._in_flight or self._accepting, timeout)
            return [] if self._accepting else list(self._in_flight.values())

    def resume(self) -> None:
        """Accept work again (and release a drain still waiting); a retired worker stays shut."""
        with self._cond:
            self._accepting = self._retired is None
            self._cond.notify_all()

    def count(self, counter: str) -> None:
        """Add one to a counter of the loop's own (e.g. ``jobs_lost``), shown in the heartbeat."""
        with self._cond:
            self._counters[counter] = self._counters.get(counter, 0) + 1

    def status(self) -> dict[str, Any]:
        """In-flight count and job counters for the heartbeat."""
        with self._cond:
            return {"in_flight": len(self._in_flight), **self._stats.as_dict(), **self._counters}

    def _call(self, hook: Callable[..., None] | None, *args: Any) -> None:
        # Hooks belong to the host; a failing one must not break the drain or the listener.
        if hook is None:
            return
        try:
            hook(*args)
        except Exception:
            logger.exception("drain hook %r failed", hook)
