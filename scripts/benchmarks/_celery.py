"""N real Celery workers (solo pool) on a given Redis, the anchor drainctl is compared with.

Workers run without gossip, mingle and heartbeat events unless ``lean=False``: those only add
background traffic, so turning them off can only make Celery's figures better, never worse.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import time
from typing import Any

from _common import BIN, HERE, progress, reap, wait_until

# Seconds a worker may take to start, on top of a base, when many start at once on few cores.
START_BASE_S, START_PER_WORKER_S = 30.0, 3.0
WORKER_ARGV = [str(BIN / "celery"), "-A", "_celery_app", "worker", "-P", "solo", "-l", "WARNING"]
# Background chatter between workers; off unless a benchmark wants Celery's defaults.
LEAN_ARGS = ["--without-gossip", "--without-mingle", "--without-heartbeat"]


def worker_env(broker_url: str) -> dict[str, str]:
    """Environment for workers and the ``celery`` CLI: the broker and where the app module is."""
    return {**os.environ, "DRAINCTL_BENCH_BROKER": broker_url, "PYTHONPATH": str(HERE)}


@functools.cache
def control_app(broker_url: str) -> Any:
    """The requester's Celery app on ``broker_url`` (Celery is imported only when needed)."""
    os.environ.setdefault("DRAINCTL_BENCH_BROKER", broker_url)
    from _celery_app import make_app

    return make_app(broker_url)


class CeleryWorkers:
    """Start ``count`` workers and wait until every one answers a ping; stop them afterwards."""

    def __init__(self, broker_url: str, count: int, *, lean: bool = True) -> None:
        self.broker_url = broker_url
        self.count = count
        self.argv = WORKER_ARGV + (LEAN_ARGS if lean else [])
        self.processes: list[subprocess.Popen[bytes]] = []
        self.start_s = 0.0

    def __enter__(self) -> CeleryWorkers:
        started = time.monotonic()
        env = worker_env(self.broker_url)
        try:
            for index in range(self.count):
                self.processes.append(
                    subprocess.Popen(
                        [*self.argv, "-n", f"w{index}@bench"],
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
