"""Clock drain overhead: how long a drain takes beyond the running job's remaining time.

A BackgroundScheduler with a ClockAdapter (lease, once-keys, persistence, all on a private
redis-server) runs a 100 ms job; a drain starts as soon as the job has begun. The overhead is the
time from the job's last line to the drain's return (event dispatch, wake-up, persisting the
schedule): median over 25 drains, target under 20 ms. The same is measured for a drain requested
over the control channel (the full round trip ``drainctl drain`` makes). The anchor is APScheduler's
own way to wait for running jobs, ``shutdown(wait=True)``, measured the same way in the same run.

Run alone: ``.venv/bin/python scripts/benchmarks/clock_drain.py`` prints the JSON.
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from apscheduler.schedulers.background import BackgroundScheduler  # noqa: E402

from drainctl.adapters.apscheduler import ClockAdapter  # noqa: E402
from drainctl.channel import ControlClient  # noqa: E402
from drainctl.config import Settings  # noqa: E402
from drainctl.listener import ControlListener  # noqa: E402
from drainctl.protocol import Command  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

DRAINS = 25
JOB_S = 0.1
TARGET_MS = 20.0


class SlowJob:
    """A job that works for JOB_S and notes when it began and when its last line ran."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.ended_at = 0.0

    def __call__(self) -> None:
        self.started.set()
        time.sleep(JOB_S)
        self.ended_at = time.perf_counter()

    def add_to(self, scheduler: BackgroundScheduler) -> None:
        scheduler.add_job(self, "interval", hours=1, id="slow", name="slow", next_run_time=_now())


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _wait(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("benchmark condition not met in time")
        time.sleep(0.001)


def measure_drains(settings: Settings, over_channel: bool) -> list[float]:
    """Overheads (ms) of DRAINS drains of a clock whose job is running."""
    job = SlowJob()
    scheduler = BackgroundScheduler(timezone=timezone.utc)
    job.add_to(scheduler)
    clock = ClockAdapter(scheduler)
    listener = ControlListener(adapter=clock, settings=settings)
    clock.run(listener, sigterm=False)
    client = ControlClient(settings)
    overheads = []
    try:
        for _ in range(DRAINS):
            if not job.started.wait(10):
                raise RuntimeError("the job did not start")
            if over_channel:
                outcome = client.send(Command.DRAIN, args={"deadline": 10}, timeout=15)
                assert outcome.ok, outcome
            else:
                assert clock.drain(10).complete
            overheads.append((time.perf_counter() - job.ended_at) * 1000)
            job.started.clear()
            scheduler.modify_job("slow", next_run_time=_now())
            listener.resume()
    finally:
        clock.close()
    return overheads


def measure_shutdown_wait() -> list[float]:
    """The anchor: APScheduler's shutdown(wait=True) beyond the running job's end (ms)."""
    overheads = []
    for _ in range(DRAINS):
        job = SlowJob()
        scheduler = BackgroundScheduler(timezone=timezone.utc)
        job.add_to(scheduler)
        scheduler.start()
        if not job.started.wait(10):
            raise RuntimeError("the job did not start")
        scheduler.shutdown(wait=True)
        overheads.append((time.perf_counter() - job.ended_at) * 1000)
    return overheads


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered), 3),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 3),
        "max_ms": round(ordered[-1], 3),
    }


def run() -> dict[str, Any]:
    """Drain overhead of the clock adapter, locally and over the channel, and the anchor."""
    server = RedisServer().start()
    try:
        settings = Settings(
            redis_url=server.url,
            app=f"bench-{uuid.uuid4().hex[:8]}",
            process_type="clock",
            release="v1",
            heartbeat_interval=1.0,
        )
        local = measure_drains(settings, over_channel=False)
        channel = measure_drains(settings.replace(app=f"{settings.app}-ch"), over_channel=True)
        anchor = measure_shutdown_wait()
    finally:
        server.cleanup()
    return {
        "benchmark": "clock_drain",
        "drains": DRAINS,
        "job_ms": JOB_S * 1000,
        "target_ms": TARGET_MS,
        "drain_overhead": _summary(local),
        "drain_overhead_over_channel": _summary(channel),
        "anchor_apscheduler_shutdown_wait_overhead": _summary(anchor),
        "meets_target": statistics.median(local) < TARGET_MS,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
