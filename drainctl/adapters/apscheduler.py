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
lease (``drainctl.lease``), every run claimed by a once-key first. Each time it becomes the holder
it restores the schedule from Redis (``apscheduler_schedule``), then APScheduler fires what fell
due in the gap by each job's own settings: ``coalesce=True`` fires the missed runs once (the
latest), ``coalesce=False`` each of them; a run later than ``misfire_grace_time`` (APScheduler's
default: 1 s) is reported missed and not run, so give jobs a grace covering your deploy window.
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
from drainctl.connection import REDIS_ERRORS, connect
from drainctl.errors import ConfigError
from drainctl.keys import Keys
from drainctl.lease import Lease, LeaseKeeper, Verdict
from drainctl.listener import ControlListener
from drainctl.schedule_store import DEFAULT_SCHEDULE_TTL, ScheduleStore
from drainctl.shutdown import drain_on_sigterm

__all__ = ["ClockAdapter", "scheduled_run_time"]

logger = logging.getLogger(__name__)

DEFAULT_ONCE_TTL = 24 * 3600.0


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
        self.schedule: JobSchedule | None = None
        self.keeper: LeaseKeeper | None = None
        self._cond = threading.Condition()
        # Held to decide whether to fire and to pause or resume the scheduler accordingly, so the
        # scheduler is paused and resumed in the order those decisions were made.
        self._acting = threading.RLock()
        self._token: int | None = None
        self._fenced = False
        self._drained = False
        self._in_flight = InFlight(self._cond)
        try:
            scheduler.add_executor(ClockExecutor(self._claim, self._retire, max_workers))
        except ValueError:
            raise ConfigError(
                "the scheduler already has a 'default' executor; let ClockAdapter install its "
                "own (pass max_workers= to size it)"
            ) from None
        scheduler.add_listener(self._in_flight.on_event, InFlight.EVENTS)
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
        self.schedule = JobSchedule(self.scheduler, ScheduleStore(client, keys, self.schedule_ttl))
        self.keeper = LeaseKeeper(
            self.lease, self._on_acquired, self._on_lost, self.schedule.follow
        )

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
        if self.listener is None:
            raise ConfigError("install_sigterm needs a started clock: call run() first")
        drain_on_sigterm(
            self.listener,
            grace=grace,
            margin=margin,
            before_exit=[self._persist_hook, self._release_hook],
        )

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
        finished: list[str] = []
        with self._acting:
            with self._cond:
                self._drained = True
                self._in_flight.recorders.append(finished)
            self._pause()
        # get_jobs() takes the scheduler's job-store lock: a pass that was submitting runs when we
        # paused has finished, and every run it submitted is registered as in flight.
        self.scheduler.get_jobs()
        with self._cond:
            self._cond.wait_for(
                lambda: not self._in_flight.runs or not self._drained,
                max(0.0, deadline - (time.monotonic() - started)),
            )
            still = self._in_flight.still_running()
            aborted = not self._drained
            self._in_flight.recorders.remove(finished)
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

    @property
    def accepting(self) -> bool:
        """False while drained or fenced: the listener reports its state from this."""
        return not (self._drained or self._fenced)

    def status(self) -> dict[str, Any]:
        """Runs in flight, counters, and where this clock stands with the lease."""
        with self._cond:
            return {
                "in_flight": len(self._in_flight.runs),
                **self._in_flight.stats.as_dict(),
                "missed": self._in_flight.missed,
                "lease": self.keeper.verdict.value if self.keeper else "unbound",
                "fencing_token": self._token,
            }

    # -- lease -----------------------------------------------------------------------------

    def _on_started(self, event: Any) -> None:
        if self.keeper is not None:
            self.keeper.start()

    def _on_acquired(self, token: int) -> None:
        assert self.schedule is not None
        assert self.keeper is not None
        # Taking over after Redis lost its data and the holder with it: what the holder fired
        # since our last look is unrecorded, so fire nothing due before we saw the loss.
        loss = self.keeper.taken_after_loss_at
        self.schedule.restore(not_before_ms=None if loss is None else round(loss * 1000))
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
        with self._acting:
            with self._cond:
                fire = self._token is not None and not self._drained and not self._fenced
            if fire and self.scheduler.state == STATE_PAUSED:
                self.scheduler.resume()
            elif not fire:
                self._pause()

    def _pause(self) -> None:
        with self._acting:
            if self.scheduler.state == STATE_RUNNING:
                self.scheduler.pause()

    # -- persist -------------------------------------------------------------------------

    def _persist(self) -> list[str]:
        """Save each job's next run time if we hold the lease; returns ``id@time`` entries."""
        with self._cond:
            token = self._token
        if self.schedule is None or token is None:
            return []
        try:
            return self.schedule.persist(token)
        except REDIS_ERRORS as exc:
            logger.warning("could not persist the schedule: %s", exc)
            return []

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
        if token is None or self.lease is None or self.keeper is None or self.schedule is None:
            return []
        wanted = [run_ms(run_time) for run_time in run_times]
        try:
            granted = self.lease.claim(token, job.id, wanted)
        except REDIS_ERRORS as exc:
            logger.warning(
                "cannot claim a run of %r (%s): pausing until Redis is back", job.id, exc
            )
            granted = None
        if granted is None:
            # Not dropped for good: the restore when we hold the lease again starts after the
            # last run we saw fired (kept in memory too, in case Redis lost it), so APScheduler
            # fires this run then, within its misfire grace.
            with self._cond:
                self._token = None
            self._pause()
            self.keeper.recheck()
            return []
        self.schedule.note(job.id, granted)
        allowed = [rt for rt, ms in zip(run_times, wanted, strict=True) if ms in set(granted)]
        if len(allowed) < len(run_times):
            logger.info(
                "job %r: %d run(s) already fired elsewhere", job.id, len(run_times) - len(allowed)
            )
        with self._cond:
            self._in_flight.add(job, allowed)
        return allowed

    def _retire(self, job_id: str, run_times: list[datetime]) -> None:
        with self._cond:
            self._in_flight.retire(job_id, run_times)

    def _on_submitted(self, event: Any) -> None:
        logger.debug("job %r submitted for %s", event.job_id, event.scheduled_run_times)
