"""The due times of Celery beat entries, named exactly so two beats claim the same once-keys.

Celery's own ``is_due`` answers "is it time yet?" from each entry's ``last_run_at``; a clock that
fences and claims needs more: the scheduled time of each run, identical in every beat process,
so a once-key per (entry, due time) makes a second send of the same run impossible.

- An interval entry (``schedule``/``timedelta``/seconds) runs on a grid of its interval counted
  from the Unix epoch (every 10 s: at :00, :10, ...; every day: 00:00 UTC), in milliseconds.
- A crontab or solar entry runs at the times its schedule gives, rounded to the second.

What fell due while no beat sent (``due_runs``) is sent by the entry's ``catch_up``: ``latest``
(the default) sends the latest run only, ``each`` every run; runs later than the entry's grace
(``misfire_grace``, default 300 s), unless the deploy grace covers them, are reported missed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any

from apscheduler.triggers.cron import CronTrigger
from celery.beat import ScheduleEntry
from celery.schedules import crontab
from celery.schedules import schedule as interval_schedule

from drainctl.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_MISFIRE_GRACE = 300.0
MAX_CATCH_UP = 1000  # due runs computed per entry and tick, so a tiny interval cannot stall beat


class CatchUp(str, Enum):
    """What a beat sends for the runs of one entry that fell due while none sent."""

    LATEST = "latest"
    EACH = "each"


@dataclass
class BeatEntry:
    """One ``beat_schedule`` entry and the due time (epoch ms) of its next run."""

    entry: ScheduleEntry
    catch_up: CatchUp = CatchUp.LATEST
    misfire_grace: float = DEFAULT_MISFIRE_GRACE
    next_ms: int = 0
    missed: int = field(default=0)

    @property
    def name(self) -> str:
        """The entry's key in ``beat_schedule``."""
        return str(self.entry.name)

    def after(self, ms: int) -> int:
        """The first due time strictly after ``ms``."""
        return next_due(self.entry.schedule, ms)

    def due_runs(self, now: int) -> list[int]:
        """Due times from ``next_ms`` up to ``now`` (at most ``MAX_CATCH_UP``); advances."""
        runs: list[int] = []
        while self.next_ms <= now and len(runs) < MAX_CATCH_UP:
            runs.append(self.next_ms)
            self.next_ms = self.after(self.next_ms)
        return runs

    def sendable(self, runs: list[int], now: int, covered: Callable[[int], bool]) -> list[int]:
        """The runs to send: within the grace (or the deploy's), then by ``catch_up``."""
        late_ms = self.misfire_grace * 1000
        kept = [ms for ms in runs if now - ms <= late_ms or covered(ms)]
        if len(kept) < len(runs):
            self.missed += len(runs) - len(kept)
            logger.warning(
                "beat entry %r: %d run(s) more than %.0fs late reported missed, not sent",
                self.name,
                len(runs) - len(kept),
                self.misfire_grace,
            )
        if self.catch_up is CatchUp.LATEST:
            return kept[-1:]
        return kept


def next_due(schedule: Any, after_ms: int) -> int:
    """The first due time (epoch ms) of ``schedule`` strictly after ``after_ms``."""
    if type(schedule) is interval_schedule:
        step: int = max(1, round(schedule.run_every.total_seconds() * 1000))
        return (after_ms // step + 1) * step
    last = datetime.fromtimestamp(after_ms / 1000, tz=timezone.utc)
    if isinstance(schedule, crontab):
        when = crontab_after(schedule, last)
    else:
        when = schedule.now() + schedule.remaining_estimate(last)
    due = round(when.timestamp()) * 1000
    # A schedule that answers "now" for a time already past (solar, between its events) must
    # still move forward.
    return due if due > after_ms else math.floor(after_ms / 1000 + 1) * 1000


def crontab_after(entry: crontab, last: datetime) -> datetime:
    """The first time ``entry`` fires strictly after ``last``, from its parsed fields alone.

    APScheduler's cron trigger, not Celery's ``remaining_delta``: before Celery 5.6 that answers
    "the next hour" for a last run on another day than today, so a gap across midnight would
    put every crontab run on the wrong minute (and two beats could disagree on it).
    """
    trigger = CronTrigger(
        minute=_cron_list(entry.minute),
        hour=_cron_list(entry.hour),
        day=_cron_list(entry.day_of_month),
        month=_cron_list(entry.month_of_year),
        # Celery counts weekdays from Sunday (0), APScheduler from Monday (0).
        day_of_week=_cron_list((day - 1) % 7 for day in entry.day_of_week),
        timezone=entry.tz,
    )
    when: datetime | None = trigger.get_next_fire_time(None, last + timedelta(microseconds=1))
    if when is None:  # cannot happen for a crontab Celery accepted; be loud if it does
        raise ConfigError(f"crontab {entry} never fires after {last.isoformat()}")
    return when


def _cron_list(values: Iterable[int]) -> str:
    return ",".join(str(value) for value in sorted(values))


def beat_entry(entry: ScheduleEntry, options: dict[str, Any]) -> BeatEntry:
    """A ``BeatEntry`` from a Celery entry and the drainctl keys of its ``beat_schedule`` dict."""
    try:
        catch_up = CatchUp(options.get("catch_up", CatchUp.LATEST))
    except ValueError:
        raise ConfigError(
            f"beat entry {entry.name!r}: catch_up must be 'latest' or 'each', "
            f"not {options.get('catch_up')!r}"
        ) from None
    grace = float(options.get("misfire_grace", DEFAULT_MISFIRE_GRACE))
    return BeatEntry(entry, catch_up, grace)


def restored_next(item: BeatEntry, last_ms: int | None, next_ms: int | None, now: int) -> int:
    """Where an entry resumes: after its last sent run, else its saved next, else from now."""
    if last_ms is not None:
        return item.after(last_ms)
    if next_ms is not None:
        return next_ms
    return item.after(now)


def iso(ms: int) -> str:
    """An epoch-ms time as ISO 8601 UTC, for logs and drain reports."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat()
