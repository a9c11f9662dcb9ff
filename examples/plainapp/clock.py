"""The demo app's clock as it was before drainctl: a plain APScheduler ``BlockingScheduler``.

Procfile::

    clock: python -m examples.plainapp.clock

The clock of Heroku's own guide: no SIGTERM handling (the process dies at once, a run in progress
with it) and an in-memory schedule (a new clock starts from "now", so runs due while none ran are
never fired). Nothing stops two clocks from firing the same run. Same jobs and knobs as
``examples/demoapp/clock.py`` (``DEMO_TICK_SECONDS``, ``DEMO_REPORT_SECONDS``,
``DEMO_REPORT_DURATION``), same ledger, so the demo counts both apps alike.
"""

from __future__ import annotations

import math
import os
import time
from datetime import datetime, timedelta, timezone

from apscheduler.schedulers.blocking import BlockingScheduler

from examples.demoapp import ledger

# Triggers anchored at a fixed instant: every clock, old or new, computes the same run times.
ANCHOR = datetime(2024, 1, 1, tzinfo=timezone.utc)


def scheduled_at(interval: float) -> datetime:
    """The run time being executed: the last point of the job's grid (plain APScheduler does not
    tell a job its scheduled time; a run starts a few milliseconds after it)."""
    elapsed = (datetime.now(timezone.utc) - ANCHOR).total_seconds()
    return ANCHOR + timedelta(seconds=math.floor(elapsed / interval) * interval)


def main() -> None:
    """Schedule ``tick`` and ``report`` and run until killed."""
    app = ledger.app_name()
    tick_s = float(os.environ.get("DEMO_TICK_SECONDS", "1"))
    report_s = float(os.environ.get("DEMO_REPORT_SECONDS", "10"))
    report_duration = float(os.environ.get("DEMO_REPORT_DURATION", "3"))

    def tick() -> None:
        ledger.count(ledger.fires_key(app), ledger.run_label("tick", scheduled_at(tick_s)))

    def report() -> None:
        label = ledger.run_label("report", scheduled_at(report_s))
        ledger.count(ledger.fire_starts_key(app), label)
        time.sleep(report_duration)  # stands in for a slow export
        ledger.count(ledger.fires_key(app), label)

    scheduler = BlockingScheduler(timezone=timezone.utc)
    scheduler.add_job(tick, "interval", seconds=tick_s, start_date=ANCHOR, id="tick")
    scheduler.add_job(report, "interval", seconds=report_s, start_date=ANCHOR, id="report")
    scheduler.start()


if __name__ == "__main__":
    main()
