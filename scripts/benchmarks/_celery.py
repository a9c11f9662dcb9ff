"""N real Celery workers (solo pool) on a given Redis, the anchor drainctl is compared with.

Workers run without gossip, mingle and heartbeat events: those only add background traffic, so
turning them off can only make Celery's figures better, never worse.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Any

from _common import BIN, HERE, progress, reap, wait_until

# Seconds a worker may take to start, on top of a base, when many start at once on few cores.
START_BASE_S, START_PER_WORKER_S = 30.0, 3.0
WORKER_ARGV = [
    str(BIN / "celery"),
    *("-A", "_celery_app", "worker", "-P", "solo", "-l", "WARNING"),
    *("--without-gossip", "--without-mingle", "--without-heartbeat"),
]


def worker_env(broker_url: str) -> dict[str, str]:
    """Environment for workers and the ``celery`` CLI: the broker and where the app module is."""
    return {**os.environ, "DRAINCTL_BENCH_BROKER": broker_url, "PYTHONPATH": str(HERE)}


def control_app(broker_url: str) -> Any:
    """The requester's Celery app (imported here so only Celery benchmarks pay for it)."""
    os.environ["DRAINCTL_BENCH_BROKER"] = broker_url
    from _celery_app import app

    return app


class CeleryWorkers:
    """Start ``count`` workers and wait until every one answers a ping; stop them afterwards."""

    def __init__(self, broker_url: str, count: int) -> None:
        self.broker_url = broker_url
        self.count = count
        self.processes: list[subprocess.Popen[bytes]] = []
        self.start_s = 0.0

    def __enter__(self) -> CeleryWorkers:
        started = time.monotonic()
        env = worker_env(self.broker_url)
        try:
            for index in range(self.count):
                self.processes.append(
                    subprocess.Popen(
                        [*WORKER_ARGV, "-n", f"w{index}@bench"],
                        cwd=HERE,
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            app = control_app(self.broker_url)
            wait_until(
                lambda: len(app.control.ping(timeout=0.5)) >= self.count,
                START_BASE_S + START_PER_WORKER_S * self.count,
                f"{self.count} Celery workers to answer",
            )
        except BaseException:
            self.stop()
            raise
        self.start_s = time.monotonic() - started
        progress(f"{self.count} Celery workers up in {self.start_s:.1f} s")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pids(self) -> list[int]:
        """Process ids of the running hosts."""
        return [process.pid for process in self.processes]

    def stop(self) -> None:
        """Warm shutdown (SIGTERM); kill whatever is still there after a while."""
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        reap(self.processes, 20)
        self.processes = []
