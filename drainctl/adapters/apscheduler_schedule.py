"""Between a scheduler's jobs and the schedule stored in Redis: restore on acquire, persist on exit.

Restore rules (each time a clock becomes the lease holder, before it fires):

- a job with a recorded last fire resumes at the first run time its trigger gives after it;
- a job with only a persisted next run time resumes there (so ``replace_existing=True``
  at start-up does not recompute it from now and skip the runs due in the gap);
- a job paused in code (no next run time) stays paused; jobs Redis does not know run as scheduled;
- jobs Redis knows but the code no longer has are dropped from Redis with a log line.

APScheduler then fires what fell due, by each job's ``coalesce`` and ``misfire_grace_time``,
except that a run the deploy delayed gets the clock-wide deploy grace (``ClockExecutor``).

The clock core (``drainctl.clock.core``) also remembers, in memory, the latest run that fired per
job as far as it has seen: its own claims, and ``clock:last`` read at each standby poll. The
restore starts after whichever is later, so a clock that takes over after Redis lost its data
never fires again a run it saw fired. A standby taking over after Redis lost its data *and* the
holder (``not_before_ms``) also skips every run due before it noticed the loss: the holder may
have fired those after the standby's last look, and nothing recorded it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from apscheduler.job import Job
from apscheduler.schedulers.base import BaseScheduler

from drainctl.clock.schedule_store import ScheduleStore, StoredRun

logger = logging.getLogger(__name__)


def run_ms(when: datetime) -> int:
    """A scheduled run time in epoch milliseconds: how once-keys and the store name it."""
    return round(when.timestamp() * 1000)


class JobSchedule:
    """Restores and persists the next run times of one scheduler's jobs."""

    def __init__(self, scheduler: BaseScheduler, store: ScheduleStore) -> None:
        self.scheduler = scheduler
        self.store = store

    def restore(self, stored: dict[str, StoredRun], not_before_ms: int | None = None) -> None:
        """Apply the stored schedule (merged with the fires seen in memory by the clock core)
        to the jobs the code added (see the module docstring); with ``not_before_ms``, no job
        resumes at or before that time."""
        jobs = {job.id: job for job in self.scheduler.get_jobs()}
        gone = sorted(stored.keys() - jobs.keys())
        for job_id in gone:
            logger.warning("job %r of the persisted schedule no longer exists: dropped", job_id)
        self.store.forget(gone)
        for job_id, run in stored.items():
            job = jobs.get(job_id)
            when = restored_next(job, run) if job is not None else None
            if when is not None:
                logger.info("restored job %r: next run at %s", job_id, when.isoformat())
                self.scheduler.modify_job(job_id, next_run_time=when)
        if not_before_ms is not None:
            self._skip_through(not_before_ms)

    def _skip_through(self, floor_ms: int) -> None:
        for job in self.scheduler.get_jobs():
            if job.next_run_time is None or run_ms(job.next_run_time) > floor_ms:
                continue
            floor = datetime.fromtimestamp(floor_ms / 1000, job.next_run_time.tzinfo)
            later = job.trigger.get_next_fire_time(None, floor + timedelta(milliseconds=1))
            logger.warning(
                "job %r: Redis lost its data with the last clock; runs before %s are skipped "
                "(they may have fired unrecorded), next at %s",
                job.id,
                floor.isoformat(),
                later.isoformat() if later else None,
            )
            self.scheduler.modify_job(job.id, next_run_time=later)

    def persist(self, token: int) -> list[str]:
        """Save each job's next run time under ``token``; the ``id@time`` entries saved."""
        # A stopped scheduler has no jobs left to report: saving would wipe the schedule.
        if not self.scheduler.running:
            return []
        jobs = [job for job in self.scheduler.get_jobs() if job.next_run_time is not None]
        if self.store.save(token, {job.id: run_ms(job.next_run_time) for job in jobs}) is None:
            return []
        return [f"{job.id}@{job.next_run_time.isoformat()}" for job in jobs]


def restored_next(job: Job, run: StoredRun) -> datetime | None:
    """The first run time after the last one that fired, else the persisted next run time."""
    if job.next_run_time is None:
        return None
    tz = job.next_run_time.tzinfo
    if run.last_ms is not None:
        last = datetime.fromtimestamp(run.last_ms / 1000, tz)
        following: datetime | None = job.trigger.get_next_fire_time(last, last)
        return following
    if run.next_ms is not None:
        return datetime.fromtimestamp(run.next_ms / 1000, tz)
    return None
