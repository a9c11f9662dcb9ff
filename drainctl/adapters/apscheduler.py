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
skip) and starts the scheduler paused: it fires only while this process holds the app's clock
lease (``drainctl.clock``), every run claimed by a once-key first. Each time it becomes the holder
it restores the schedule from Redis (``apscheduler_schedule``), then APScheduler fires what fell
due in the gap by each job's own settings: ``coalesce=True`` fires the missed runs once (the
latest), ``coalesce=False`` each of them; a run later than ``misfire_grace_time`` (APScheduler's
default: 1 s) is reported missed and not run, unless the deploy delayed it: a run due while the
clock was drained, or between the old clock's drain and this one's start, fires once if at most
``deploy_grace`` (15 min) late (``drainctl.clock.deploy_grace``).
Running jobs are retired through APScheduler's events (executed, error, missed).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Any

from apscheduler.events import (
    EVENT_JOB_SUBMITTED,
    EVENT_SCHEDULER_STARTED,
)
from apscheduler.job import Job
from apscheduler.schedulers.base import STATE_PAUSED, STATE_RUNNING, STATE_STOPPED, BaseScheduler

from drainctl.adapters.apscheduler_executor import ClockExecutor, InFlight, scheduled_run_time
from drainctl.adapters.apscheduler_schedule import JobSchedule, run_ms
from drainctl.adapters.base import DrainReport
from drainctl.clock.core import DEFAULT_ONCE_TTL, ClockCore, ClockOptions
from drainctl.clock.deploy_grace import DEFAULT_DEPLOY_GRACE
from drainctl.clock.schedule_store import DEFAULT_SCHEDULE_TTL, StoredRun
from drainctl.errors import ConfigError
from drainctl.listener import ControlListener

__all__ = ["ClockAdapter", "scheduled_run_time"]

logger = logging.getLogger(__name__)


class ClockAdapter:
    """Drives an APScheduler 3.x scheduler for a ControlListener; see the module docstring.

    ``lease_ttl`` (default: the listener's ``Settings.lease_ttl``, 15 s, ``DRAINCTL_LEASE_TTL``)
    bounds how long a SIGKILLed clock keeps others from firing; ``once_ttl`` how long once-keys
    live; ``schedule_ttl`` how long the persisted schedule outlives the last clock;
    ``deploy_grace`` how late a run delayed by a drain or deploy may still fire. The adapter
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
        deploy_grace: float = DEFAULT_DEPLOY_GRACE,
        max_workers: int = 10,
    ) -> None:
        self.scheduler = scheduler
        self.core = ClockCore(self, ClockOptions(lease_ttl, once_ttl, schedule_ttl, deploy_grace))
        self.schedule: JobSchedule | None = None
        self._cond = self.core.cond
        # Held to decide whether to fire and to pause or resume the scheduler accordingly, so the
        # scheduler is paused and resumed in the order those decisions were made.
        self._acting = threading.RLock()
        self._in_flight = InFlight(self._cond)
        executor = ClockExecutor(self._claim, self._retire, self.core.grace.covers, max_workers)
        try:
            scheduler.add_executor(executor)
        except ValueError:
            raise ConfigError(
                "the scheduler already has a 'default' executor; let ClockAdapter install its "
                "own (pass max_workers= to size it)"
            ) from None
        scheduler.add_listener(self._in_flight.on_event, InFlight.EVENTS)
        scheduler.add_listener(self._on_submitted, EVENT_JOB_SUBMITTED)
        scheduler.add_listener(self._on_started, EVENT_SCHEDULER_STARTED)

    @property
    def listener(self) -> ControlListener | None:
        """The listener this clock is bound to."""
        return self.core.listener

    # -- lifecycle -------------------------------------------------------------------------

    def bind(self, listener: ControlListener) -> None:
        """Connect to the listener's Redis and identity; ``run`` does this for you."""
        self.core.bind(listener)
        assert self.core.store is not None
        self.schedule = JobSchedule(self.scheduler, self.core.store)

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
        if sigterm and threading.current_thread() is not threading.main_thread():
            raise ConfigError(
                "ClockAdapter.run(sigterm=True) must be called from the main thread (only it can "
                "install signal handlers); pass sigterm=False and call clock.install_sigterm() "
                "from the main thread"
            )
        self.bind(listener)
        listener.start()
        if sigterm:
            self.install_sigterm(grace=grace, margin=margin)
        self.scheduler.start(paused=True)
        if self.scheduler.state == STATE_STOPPED:  # a BlockingScheduler that was shut down
            self.close()

    def install_sigterm(self, *, grace: float = 30.0, margin: float = 5.0) -> None:
        """From the main thread: on SIGTERM drain, persist, release the lease, exit 0."""
        self.core.install_sigterm(grace=grace, margin=margin)

    def close(self) -> None:
        """Exit without a signal: persist, release the lease, stop the scheduler and listener."""
        self.core.persist()
        self.core.release()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self.listener is not None:
            self.listener.stop()

    # -- Adapter protocol ------------------------------------------------------------------

    def drain(self, deadline: float) -> DrainReport:
        """Pause firing, wait for running jobs up to ``deadline``, persist the schedule."""
        started = time.monotonic()
        finished: list[str] = []
        with self._acting:
            self.core.drain_started()
            with self._cond:
                self._in_flight.recorders.append(finished)
            self._pause()
        self.core.record_drain()
        # get_jobs() takes the scheduler's job-store lock: a pass that was submitting runs when we
        # paused has finished, and every run it submitted is registered as in flight.
        self.scheduler.get_jobs()
        with self._cond:
            self._cond.wait_for(
                lambda: not self._in_flight.runs or not self.core.drained,
                max(0.0, deadline - (time.monotonic() - started)),
            )
            still = self._in_flight.still_running()
            aborted = not self.core.drained
            self._in_flight.recorders.remove(finished)
        persisted = [] if aborted else self.core.persist()
        return DrainReport(
            finished=finished,
            handed_back=persisted,
            still_running=still,
            duration_s=round(time.monotonic() - started, 4),
            aborted=aborted,
        )

    def resume(self) -> None:
        """Fire again (if this clock holds the lease); ends a drain still waiting."""
        self.core.resumed()

    @property
    def accepting(self) -> bool:
        """False while drained or fenced: the listener reports its state from this."""
        return self.core.accepting

    def status(self) -> dict[str, Any]:
        """Runs in flight, counters, and where this clock stands with the lease."""
        # Outside the condition: get_jobs() takes the job-store lock, which the scheduler holds
        # while it claims runs under the condition (the other order would deadlock).
        extra = {**self.core.status(), "next_due": self._next_due()}
        with self._cond:
            return {
                "in_flight": len(self._in_flight.runs),
                **self._in_flight.stats.as_dict(),
                "missed": self._in_flight.missed,
                **extra,
            }

    def _next_due(self) -> str | None:
        # A job still pending (added before the scheduler started) has no next_run_time yet.
        jobs = self.scheduler.get_jobs()
        times = [when for job in jobs if (when := getattr(job, "next_run_time", None))]
        return min(times).isoformat() if times else None

    # -- ClockHost: what the core asks of APScheduler -------------------------------------

    def _on_started(self, event: Any) -> None:
        self.core.start()

    def restore(self, stored: dict[str, StoredRun], not_before_ms: int | None) -> None:
        """Each time we become the holder: resume every job after its last fire."""
        assert self.schedule is not None
        self.schedule.restore(stored, not_before_ms)

    def sync_firing(self) -> None:
        """Fire exactly when holding the lease and not drained."""
        with self._acting:
            fire = self.core.firing
            if fire and self.scheduler.state == STATE_PAUSED:
                self.scheduler.resume()
            elif not fire:
                self._pause()

    def persist(self, token: int) -> list[str]:
        """Save each job's next run time under ``token``."""
        return [] if self.schedule is None else self.schedule.persist(token)

    def _pause(self) -> None:
        with self._acting:
            if self.scheduler.state == STATE_RUNNING:
                self.scheduler.pause()

    # -- runs ------------------------------------------------------------------------------

    def _claim(self, job: Job, run_times: list[datetime]) -> list[datetime]:
        """Called by the executor under the scheduler's lock: the run times that may fire."""
        wanted = [run_ms(run_time) for run_time in run_times]
        granted = set(self.core.claim(job.id, wanted))
        allowed = [rt for rt, ms in zip(run_times, wanted, strict=True) if ms in granted]
        with self._cond:
            self._in_flight.add(job, allowed)
        return allowed

    def _retire(self, job_id: str, run_times: list[datetime]) -> None:
        with self._cond:
            self._in_flight.retire(job_id, run_times)

    def _on_submitted(self, event: Any) -> None:
        logger.debug("job %r submitted for %s", event.job_id, event.scheduled_run_times)
