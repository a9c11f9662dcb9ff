"""Where a restored job resumes, from what Redis remembers of it (pure logic, no Redis)."""

from __future__ import annotations

from datetime import datetime, timezone

from apscheduler.job import Job
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from drainctl.adapters.apscheduler_schedule import restored_next, run_ms
from drainctl.clock.schedule_store import StoredRun

UTC = timezone.utc
NOON = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def hourly_job(next_run_time: datetime | None) -> Job:
    scheduler = BackgroundScheduler(timezone=UTC)
    job = scheduler.add_job(print, CronTrigger(minute=0, timezone=UTC), id="hourly")
    job._modify(next_run_time=next_run_time)
    return job


def test_resumes_at_the_first_run_after_the_last_fire():
    """A cron job that last fired at noon resumes at 13:00, whatever the code computed from now."""
    job = hourly_job(datetime(2024, 3, 1, 18, 0, tzinfo=UTC))
    assert restored_next(job, StoredRun(last_ms=run_ms(NOON))) == datetime(
        2024, 3, 1, 13, 0, tzinfo=UTC
    )


def test_without_a_last_fire_the_saved_next_run_time_is_kept():
    """A job that never fired keeps the next run time saved on drain."""
    job = hourly_job(datetime(2024, 3, 1, 18, 0, tzinfo=UTC))
    assert restored_next(job, StoredRun(next_ms=run_ms(NOON))) == NOON


def test_a_job_paused_in_code_stays_paused():
    """No next run time in code means paused: the stored schedule does not wake it."""
    assert restored_next(hourly_job(None), StoredRun(last_ms=run_ms(NOON))) is None
