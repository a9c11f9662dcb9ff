"""The demo app's clock: APScheduler with two jobs, drained, persisted and fenced by drainctl.

Procfile::

    clock: python examples/demoapp/clock.py

Environment: ``DRAINCTL_APP``, ``DRAINCTL_REDIS_URL`` (or ``REDIS_URL``), ``DYNO`` (``clock.1``;
or ``DRAINCTL_PROCESS_TYPE=clock``), ``HEROKU_RELEASE_VERSION`` (or ``DRAINCTL_RELEASE``: a newer
release takes the clock over), ``DRAINCTL_LEASE_TTL`` (default 15 s). Demo knobs:
``DEMO_TICK_SECONDS`` (``tick`` interval, default 1), ``DEMO_REPORT_SECONDS`` (``report``
interval, default 10, 0 disables it), ``DEMO_REPORT_DURATION`` (how long ``report`` works,
default 3), ``DEMO_MISFIRE_GRACE`` (misfire grace time, default 60), ``DEMO_LEDGER_URL`` (the
Redis of the ledger, default the clock's own: tests that wipe the clock's Redis keep it apart).

Each scheduled run that executes adds 1 to the field ``{job_id}@{scheduled run time, ISO, ms}``
of the hash ``demo:{app}:ledger:fires``; ``report`` also marks its start in
``demo:{app}:ledger:started``. A field counted twice is a duplicate fire; a gap in the schedule's
grid is a missed one. Both hashes expire after a day.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timezone

import redis
from apscheduler.schedulers.blocking import BlockingScheduler

from drainctl import ControlListener, Settings
from drainctl.adapters.apscheduler import ClockAdapter, scheduled_run_time

LEDGER_TTL = 24 * 3600
# Triggers anchored at a fixed instant: every clock, old or new, computes the same run times.
ANCHOR = datetime(2024, 1, 1, tzinfo=timezone.utc)


def run_label(job_id: str) -> str:
    """``job@2024-01-01T00:00:00.100+00:00``: the ledger field of the run executing now."""
    when = scheduled_run_time()
    assert when is not None, "called outside a clock job"
    rounded = datetime.fromtimestamp(round(when.timestamp(), 3), timezone.utc)
    return f"{job_id}@{rounded.isoformat(timespec='milliseconds')}"


class Ledger:
    """Counts each scheduled run in Redis, so duplicates and misses can be counted afterwards."""

    def __init__(self, client: redis.Redis, app: str) -> None:
        self.client = client
        self.fires = f"demo:{app}:ledger:fires"
        self.started = f"demo:{app}:ledger:started"

    def record(self, key: str, field: str) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.hincrby(key, field, 1)
        pipe.expire(key, LEDGER_TTL)
        pipe.execute()


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = Settings.from_env()
    ledger_url = os.environ.get("DEMO_LEDGER_URL") or settings.redis_url
    ledger = Ledger(redis.Redis.from_url(ledger_url), settings.require_app())
    tick_s = float(os.environ.get("DEMO_TICK_SECONDS", "1"))
    report_s = float(os.environ.get("DEMO_REPORT_SECONDS", "10"))
    report_duration = float(os.environ.get("DEMO_REPORT_DURATION", "3"))
    grace = int(os.environ.get("DEMO_MISFIRE_GRACE", "60"))

    def tick() -> None:
        ledger.record(ledger.fires, run_label("tick"))

    def report() -> None:
        label = run_label("report")
        ledger.record(ledger.started, label)
        time.sleep(report_duration)  # stands in for a slow export
        ledger.record(ledger.fires, label)

    scheduler = BlockingScheduler(timezone=timezone.utc)
    # Overlapping runs are harmless here; with the default max_instances=1 APScheduler would drop
    # (not postpone) a run that falls due while the previous one still runs, which is what the
    # catch-up after a deploy does: every run due in the gap is submitted at once.
    common = {
        "start_date": ANCHOR,
        "misfire_grace_time": grace,
        "coalesce": False,
        "max_instances": 10,
    }
    scheduler.add_job(tick, "interval", seconds=tick_s, id="tick", replace_existing=True, **common)
    if report_s > 0:
        scheduler.add_job(
            report, "interval", seconds=report_s, id="report", replace_existing=True, **common
        )
    clock = ClockAdapter(scheduler)
    clock.run(ControlListener.from_env(adapter=clock))  # SIGTERM drains, persists, exits 0


if __name__ == "__main__":
    main()
