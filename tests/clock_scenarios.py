"""A holder and a same-release standby clock, as real processes, while Redis loses its data.

The clocks use a Redis of their own (``RedisServer``, no persistence: a restart wipes it); the
ledger of fired runs lives in another (``ledger_url``), so it survives. Shared by
``tests/e2e/test_clock_data_loss.py`` and ``scripts/clock_data_loss_trials.py``.
"""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.clocks import grid_report, instance_doc, lease_holder, ledger, spawn_clock, stop_clock
from tests.polling import wait_for
from tests.redis_server import RedisServer

TICK_MS = 100
LEASE_TTL = 3.0


@dataclass
class Outcome:
    """Runs of ``tick`` seen on its grid, duplicated, and missed (between the first and last)."""

    runs: int
    duplicates: int
    missed: int


class TwoClocks:
    """clock.1 (holder) and clock.2 (standby) of release v7 on ``server``, ledger elsewhere."""

    def __init__(self, server: RedisServer, ledger_url: str, log_dir: Path) -> None:
        self.server = server
        self.app = f"dl-{uuid.uuid4().hex[:8]}"
        self.clock_redis = redis.Redis.from_url(server.url)
        self.ledger = redis.Redis.from_url(ledger_url)
        env = {
            "DEMO_TICK_SECONDS": str(TICK_MS / 1000),
            "DRAINCTL_LEASE_TTL": str(LEASE_TTL),
            "DEMO_LEDGER_URL": ledger_url,
        }
        self.spawn: Callable[[str], subprocess.Popen[str]] = lambda dyno: spawn_clock(
            server.url, self.app, dyno, "v7", log_dir / f"{self.app}-{dyno}.log", **env
        )
        self.procs: list[subprocess.Popen[str]] = []

    def fires(self) -> int:
        """Runs recorded so far."""
        return len(ledger(self.ledger, self.app))

    def holder_dyno(self) -> str | None:
        """The dyno holding the lease, if any."""
        holder = lease_holder(self.clock_redis, self.app).get("instance")
        for dyno in ("clock.1", "clock.2"):
            doc = instance_doc(self.clock_redis, self.app, dyno)
            if doc is not None and doc.get("instance_id") == holder:
                return dyno
        return None

    def start(self) -> None:
        """Start the holder, then the standby, and let them run a little."""
        self.procs.append(self.spawn("clock.1"))
        wait_for(lambda: self.holder_dyno() == "clock.1", 20, "clock.1 to hold the lease")
        self.procs.append(self.spawn("clock.2"))
        standby = lambda: (instance_doc(self.clock_redis, self.app, "clock.2") or {}).get("lease")  # noqa: E731
        wait_for(lambda: standby() == "standby", 20, "clock.2 to stand by")
        seen = self.fires()
        wait_for(lambda: self.fires() >= seen + 10, 20, "the holder to fire")

    def wipe(self, kill_holder: bool = False) -> None:
        """Restart Redis without its data (and SIGKILL the holder with it, if asked)."""
        if kill_holder:
            self.procs[0].send_signal(signal.SIGKILL)
        self.clock_redis.close()
        self.server.stop()
        self.server.start()

    def finish(self) -> Outcome:
        """Let the clocks fire 30 more runs, stop them gracefully, read the ledger."""
        seen = self.fires()
        wait_for(lambda: self.fires() >= seen + 30, 30, "the clocks to fire after the wipe")
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(20)
        runs, duplicates, missed = grid_report(ledger(self.ledger, self.app), "tick", TICK_MS)
        return Outcome(runs, len(duplicates), len(missed))

    def close(self) -> None:
        """Kill what is left, drop the ledger, close clients."""
        for proc in self.procs:
            stop_clock(proc)
        self.ledger.delete(f"demo:{self.app}:ledger:fires", f"demo:{self.app}:ledger:started")
        self.ledger.close()
        self.clock_redis.close()


def data_loss(clocks: TwoClocks) -> Outcome:
    """Redis restarts empty under a live holder and its standby."""
    clocks.start()
    clocks.wipe()
    return clocks.finish()


def data_loss_and_holder_killed(clocks: TwoClocks) -> Outcome:
    """The holder dies with Redis's data: the standby takes over from what it saw fired."""
    clocks.start()
    clocks.wipe(kill_holder=True)
    return clocks.finish()


SCENARIOS: dict[str, Callable[[TwoClocks], Outcome]] = {
    "data_loss": data_loss,
    "data_loss_and_holder_killed": data_loss_and_holder_killed,
}
