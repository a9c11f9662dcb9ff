"""The clock adapter: drain, persist, restore and fence an APScheduler 3.x scheduler.

::

    from apscheduler.schedulers.blocking import BlockingScheduler
    from drainctl import ControlListener
    from drainctl.adapters.apscheduler import ClockAdapter

    scheduler = BlockingScheduler()
    scheduler.add_job(send_digest, "cron", minute=0, id="digest", misfire_grace_time=300)
    clock = ClockAdapter(scheduler)
    clock.run(ControlListener.from_env(adapter=clock))   # blocks for a BlockingScheduler

``run`` starts the listener, installs the SIGTERM drain (main thread only; ``sigterm=False`` to
skip), starts the scheduler paused and fires only while this process holds the app's clock lease
(``drainctl.lease``). Each time it becomes the holder it restores the schedule from Redis
(``drainctl.schedule_store``): a job with a recorded last fire resumes at the first run time after
it; a job with only a persisted next run time resumes there; jobs Redis does not know are
scheduled as usual; jobs Redis knows but the code no longer has are dropped with a log line.
APScheduler then fires the runs that fell due in the gap, following each job's own settings:
``coalesce=True`` fires them once (the latest), ``coalesce=False`` fires each; a run later than
``misfire_grace_time`` (APScheduler's default: 1 s) is reported missed and not run, so give jobs a
grace covering your deploy window. Running jobs are tracked through APScheduler's events.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    EVENT_SCHEDULER_STARTED,
)
from apscheduler.job import Job
from apscheduler.schedulers.base import STATE_PAUSED, STATE_RUNNING, STATE_STOPPED, BaseScheduler

from drainctl.adapters.apscheduler_executor import ClockExecutor, scheduled_run_time
from drainctl.adapters.base import DrainReport, JobStats, RunningJob
from drainctl.connection import REDIS_ERRORS, connect
from drainctl.errors import ConfigError
from drainctl.keys import Keys
from drainctl.lease import Lease, LeaseKeeper, Verdict
from drainctl.listener import ControlListener
from drainctl.schedule_store import DEFAULT_SCHEDULE_TTL, ScheduleStore, StoredRun
from drainctl.shutdown import drain_on_sigterm

__all__ = ["ClockAdapter", "scheduled_run_time"]

logger = logging.getLogger(__name__)

DEFAULT_ONCE_TTL = 24 * 3600.0


@dataclass
class _Run:
    job_id: str
    name: str
    started: float = field(default_factory=time.monotonic)


class ClockAdapter:
    """Drives an APScheduler 3.x scheduler for a ControlListener; see the module docstring.

    ``lease_ttl`` (default: the listener's ``Settings.lease_ttl``, 15 s, ``DRAINCTL_LEASE_TTL``)
    bounds how long a SIGKILLed clock keeps others from firing; ``once_ttl`` how long once-keys
    live; ``schedule_ttl`` how long the persisted schedule outlives the last clock. The adapter
    installs its own ``default`` executor (a thread pool of ``max_workers``): jobs on other
    executors are not fenced.
    """

    def __init__(
        self,
        scheduler: BaseScheduler,
        *,
        lease_ttl: float | None = None,
        once_ttl: float = DEFAULT_ONCE_TTL,
        schedule_ttl: float = DEFAULT_SCHEDULE_TTL,
        max_workers: int = 10,
    ) -> None:
        self.scheduler = scheduler
        self.lease_ttl = lease_ttl
        self.once_ttl = once_ttl
        self.schedule_ttl = schedule_ttl
        self.listener: ControlListener | None = None
        self.lease: Lease | None = None
        self.store: ScheduleStore | None = None
        self.keeper: LeaseKeeper | None = None
        self._cond = threading.Condition()
        self._token: int | None = None
        self._fenced = False
        self._drained = False
        self._running: dict[tuple[str, int], _Run] = {}
        self._finished_in_drain: list[str] = []
        self._stats = JobStats()
        self._missed = 0
        self._events: dict[int, Callable[[Any, _Run], None]] = {
            EVENT_JOB_EXECUTED: lambda event, run: None,
            EVENT_JOB_ERROR: self._record_error,
            EVENT_JOB_MISSED: self._record_missed,
        }
        try:
            scheduler.add_executor(ClockExecutor(self._claim, self._retire, max_workers))
        except ValueError:
            raise ConfigError(
                "the scheduler already has a 'default' executor; let ClockAdapter install its "
                "own (pass max_workers= to size it)"
            ) from None
        scheduler.add_listener(
            self._on_job_event, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED
        )
        scheduler.add_listener(self._on_submitted, EVENT_JOB_SUBMITTED)
        scheduler.add_listener(self._on_started, EVENT_SCHEDULER_STARTED)

    # -- lifecycle -------------------------------------------------------------------------

    def bind(self, listener: ControlListener) -> None:
        """Connect to the listener's Redis and identity; ``run`` does this for you."""
        settings = listener.settings
        client = connect(settings, max_connections=2)
        keys = Keys(listener.identity.app)
        self.listener = listener
        self.lease = Lease(
            client,
            keys,
            instance_id=listener.identity.instance_id,
            release=listener.identity.release,
            ttl=self.lease_ttl or settings.lease_ttl,
            once_ttl=self.once_ttl,
            schedule_ttl=self.schedule_ttl,
        )
        self.store = ScheduleStore(client, keys, self.schedule_ttl)
        self.keeper = LeaseKeeper(self.lease, self._on_acquired, self._on_lost)

    def run(
        self,
        listener: ControlListener,
        *,
        sigterm: bool = True,
        grace: float = 30.0,
        margin: float = 5.0,
    ) -> None:
        """Start the listener and the scheduler (paused until the lease is ours).

        Blocks until shutdown for a ``BlockingScheduler``, returns at once for a background one.
        With ``sigterm`` (call from the main thread), SIGTERM drains with ``grace - margin``
        seconds, persists the schedule, releases the lease and exits 0.
        """
        self.bind(listener)
        listener.start()
        if sigterm:
            drain_on_sigterm(
                listener,
                grace=grace,
                margin=margin,
                before_exit=[self._persist_hook, self._release_hook],
            )
        self.scheduler.start(paused=True)
        if self.scheduler.state == STATE_STOPPED:  # a BlockingScheduler that was shut down
            self.close()

    def close(self) -> None:
        """Exit without a signal: persist, release the lease, stop the scheduler and listener."""
        self._persist()
        if self.keeper is not None:
            self.keeper.release()
        with self._cond:
            self._token = None
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self.listener is not None:
            self.listener.stop()

    # -- Adapter protocol ------------------------------------------------------------------

    def drain(self, deadline: float) -> DrainReport:
        """Pause firing, wait for running jobs up to ``deadline``, persist the schedule."""
        started = time.monotonic()
        with self._cond:
            self._drained = True
            self._finished_in_drain = []
        self._pause()
        # get_jobs() takes the scheduler's job-store lock: a pass that was submitting runs when we
        # paused has finished, and every run it submitted is registered in self._running.
        self.scheduler.get_jobs()
        with self._cond:
            self._cond.wait_for(
                lambda: not self._running or not self._drained,
                max(0.0, deadline - (time.monotonic() - started)),
            )
            now = time.monotonic()
            still = [
                RunningJob(r.job_id, r.name, round(now - r.started, 3))
                for r in self._running.values()
            ]
            finished, aborted = list(self._finished_in_drain), not self._drained
        persisted = [] if aborted else self._persist()
        return DrainReport(
            finished=finished,
            handed_back=persisted,
            still_running=still,
            duration_s=round(time.monotonic() - started, 4),
            aborted=aborted,
        )

    def resume(self) -> None:
        """Fire again (if this clock holds the lease); ends a drain still waiting."""
        with self._cond:
            self._drained = False
            self._cond.notify_all()
        self._sync()

    def status(self) -> dict[str, Any]:
        """Runs in flight, counters, and where this clock stands with the lease."""
        with self._cond:
            return {
                "in_flight": len(self._running),
                **self._stats.as_dict(),
                "missed": self._missed,
                "lease": self.keeper.verdict.value if self.keeper else "unbound",
                "fencing_token": self._token,
            }

    # -- lease -----------------------------------------------------------------------------

    def _on_started(self, event: Any) -> None:
        if self.keeper is not None:
            self.keeper.start()

    def _on_acquired(self, token: int) -> None:
        self._restore()
        with self._cond:
            self._token = token
        self._sync()

    def _on_lost(self, verdict: Verdict) -> None:
        with self._cond:
            self._token = None
            self._fenced = self._fenced or verdict is Verdict.FENCED
        self._pause()
        if verdict is Verdict.FENCED and self.listener is not None:
            self.listener.fence()

    def _sync(self) -> None:
        """Fire exactly when holding the lease and not drained."""
        with self._cond:
            fire = self._token is not None and not self._drained and not self._fenced
        if fire and self.scheduler.state == STATE_PAUSED:
            self.scheduler.resume()
        elif not fire:
            self._pause()

    def _pause(self) -> None:
        if self.scheduler.state == STATE_RUNNING:
            self.scheduler.pause()

    # -- restore and persist ---------------------------------------------------------------

    def _restore(self) -> None:
        assert self.store is not None
        stored = self.store.load()
        jobs = {job.id: job for job in self.scheduler.get_jobs()}
        gone = sorted(stored.keys() - jobs.keys())
        for job_id in gone:
            logger.warning("job %r of the persisted schedule no longer exists: dropped", job_id)
        self.store.forget(gone)
        for job_id, run in stored.items():
            job = jobs.get(job_id)
            when = _restored_next(job, run) if job is not None else None
            if when is not None:
                logger.info("restored job %r: next run at %s", job_id, when.isoformat())
                self.scheduler.modify_job(job_id, next_run_time=when)

    def _persist(self) -> list[str]:
        """Save each job's next run time (if we hold the lease); returns ``id@time`` entries."""
        with self._cond:
            token = self._token
        # A stopped scheduler has no jobs left to report: saving would wipe the schedule.
        if self.store is None or token is None or not self.scheduler.running:
            return []
        jobs = [job for job in self.scheduler.get_jobs() if job.next_run_time is not None]
        try:
            saved = self.store.save(token, {job.id: _ms(job.next_run_time) for job in jobs})
        except REDIS_ERRORS as exc:
            logger.warning("could not persist the schedule: %s", exc)
            return []
        if saved is None:
            return []
        return [f"{job.id}@{job.next_run_time.isoformat()}" for job in jobs]

    def _persist_hook(self, report: DrainReport) -> None:
        self._persist()

    def _release_hook(self, report: DrainReport) -> None:
        if self.keeper is not None:
            self.keeper.release()

    # -- runs ------------------------------------------------------------------------------

    def _claim(self, job: Job, run_times: list[datetime]) -> list[datetime]:
        """Called by the executor under the scheduler's lock: the run times that may fire."""
        with self._cond:
            token = self._token
        if token is None or self.lease is None or self.keeper is None:
            return []
        wanted = [_ms(run_time) for run_time in run_times]
        try:
            granted = self.lease.claim(token, job.id, wanted)
        except REDIS_ERRORS as exc:
            logger.warning(
                "cannot claim a run of %r (%s): pausing until Redis is back", job.id, exc
            )
            granted = None
        if granted is None:
            with self._cond:
                self._token = None
            self._pause()
            self.keeper.recheck()
            return []
        allowed = [rt for rt, ms in zip(run_times, wanted, strict=True) if ms in set(granted)]
        if len(allowed) < len(run_times):
            logger.info(
                "job %r: %d run(s) already fired elsewhere", job.id, len(run_times) - len(allowed)
            )
        with self._cond:
            for run_time in allowed:
                self._running[(job.id, _ms(run_time))] = _Run(job.id, job.name)
        return allowed

    def _retire(self, job_id: str, run_times: list[datetime]) -> None:
        with self._cond:
            for run_time in run_times:
                self._running.pop((job_id, _ms(run_time)), None)
            self._cond.notify_all()

    def _on_submitted(self, event: Any) -> None:
        logger.debug("job %r submitted for %s", event.job_id, event.scheduled_run_times)

    def _on_job_event(self, event: Any) -> None:
        with self._cond:
            run = self._running.pop((event.job_id, _ms(event.scheduled_run_time)), None)
            if run is None:
                return
            self._events[event.code](event, run)
            if event.code != EVENT_JOB_MISSED:
                self._stats.jobs_done += 1
            if self._drained:
                self._finished_in_drain.append(run.name)
            self._cond.notify_all()

    def _record_error(self, event: Any, run: _Run) -> None:
        self._stats.record_error(event.exception, run.name)

    def _record_missed(self, event: Any, run: _Run) -> None:
        self._missed += 1


def _restored_next(job: Job, run: StoredRun) -> datetime | None:
    """The first run time after the last one that fired, else the persisted next run time."""
    if job.next_run_time is None:  # paused in code: stays paused
        return None
    tz = job.next_run_time.tzinfo
    if run.last_ms is not None:
        last = datetime.fromtimestamp(run.last_ms / 1000, tz)
        nxt: datetime | None = job.trigger.get_next_fire_time(last, last)
        return nxt
    if run.next_ms is not None:
        return datetime.fromtimestamp(run.next_ms / 1000, tz)
    return None


def _ms(when: datetime) -> int:
    return round(when.timestamp() * 1000)
