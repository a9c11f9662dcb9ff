"""Due times of Celery beat entries and what a beat sends after a gap (pure logic, no Redis)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from celery import Celery
from celery.beat import ScheduleEntry
from celery.schedules import crontab, schedule

from drainctl.adapters.celery_beat_entries import CatchUp, beat_entry, next_due, restored_next
from drainctl.errors import ConfigError

APP = Celery("unit")
NOON_MS = round(datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc).timestamp() * 1000)


def entry(run_every: object, **options: object):
    celery_entry = ScheduleEntry(name="e", task="t", schedule=run_every, app=APP)
    return beat_entry(celery_entry, dict(options))


def test_interval_due_times_sit_on_an_epoch_grid():
    """Every 10 s: the next due time after 12:00:03.5 is 12:00:10, whoever computes it."""
    assert next_due(schedule(timedelta(seconds=10), app=APP), NOON_MS + 3500) == NOON_MS + 10_000
    assert next_due(schedule(timedelta(seconds=10), app=APP), NOON_MS) == NOON_MS + 10_000


def test_crontab_due_times_are_its_minutes():
    """A 15-minute crontab after 12:00 (its last run) is due at 12:15, to the millisecond."""
    assert next_due(crontab(minute="*/15", app=APP), NOON_MS) == NOON_MS + 15 * 60_000


def test_a_gap_sends_each_run_or_only_the_latest():
    """Five runs fell due: ``each`` sends all five, ``latest`` the last; older than the grace
    are counted missed unless the deploy grace covers them."""
    each = entry(timedelta(seconds=1), catch_up="each", misfire_grace=3)
    each.next_ms = NOON_MS
    runs = each.due_runs(NOON_MS + 4000)
    assert runs == [NOON_MS + i * 1000 for i in range(5)]
    assert each.next_ms == NOON_MS + 5000
    assert each.sendable(runs, NOON_MS + 4000, lambda ms: False) == runs[1:]
    assert each.missed == 1
    assert each.sendable(runs, NOON_MS + 4000, lambda ms: True) == runs
    latest = entry(timedelta(seconds=1))
    assert latest.catch_up is CatchUp.LATEST
    assert latest.sendable(runs, NOON_MS + 4000, lambda ms: False) == runs[-1:]


def test_restore_resumes_after_the_last_sent_run():
    """After the last sent run if known, else at the saved next, else the next after now."""
    item = entry(timedelta(seconds=10))
    assert restored_next(item, NOON_MS, NOON_MS + 99_000, NOON_MS + 60_000) == NOON_MS + 10_000
    assert restored_next(item, None, NOON_MS + 99_000, NOON_MS) == NOON_MS + 99_000
    assert restored_next(item, None, None, NOON_MS + 1) == NOON_MS + 10_000


def test_an_unknown_catch_up_is_a_config_error():
    """A typo in ``catch_up`` fails at start-up, naming the entry."""
    with pytest.raises(ConfigError, match="'e'"):
        entry(timedelta(seconds=1), catch_up="all")


def test_crontab_due_times_across_midnight_weekdays_and_zones():
    """Weekday names count from Sunday as Celery's do; a run a breath before its minute is
    still that minute; the app's time zone places the hours."""
    friday_2359 = NOON_MS + 12 * 3600_000 - 60_000  # 2024-03-01 is a Friday
    weekdays_9am = crontab(minute=0, hour=9, day_of_week="mon-fri", app=APP)
    monday_9am = NOON_MS + (3 * 24 - 3) * 3600_000
    assert next_due(weekdays_9am, friday_2359) == monday_9am
    sundays = crontab(minute=0, hour=0, day_of_week="sun", app=APP)
    assert next_due(sundays, NOON_MS) == NOON_MS + (2 * 24 - 12) * 3600_000
    every_15 = crontab(minute="*/15", app=APP)
    assert next_due(every_15, NOON_MS + 15 * 60_000 - 500) == NOON_MS + 15 * 60_000
    paris = Celery("paris", set_as_current=False)
    paris.conf.timezone = "Europe/Paris"
    assert next_due(crontab(minute=0, hour=13, app=paris), NOON_MS - 60_000) == NOON_MS
