"""Clock test helpers: start the example clock, read its ledger, count duplicates and misses."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import redis

from drainctl.registry import Registry
from tests.processes import ROOT

CLOCK = ROOT / "examples" / "demoapp" / "clock.py"


def spawn_clock(
    redis_url: str, app: str, dyno: str, release: str, log: Path, **env: str
) -> subprocess.Popen[str]:
    """Start ``examples/demoapp/clock.py`` as a clock dyno of ``release``, logging to ``log``.

    A file, not a pipe: a clock firing every 50 ms logs enough to fill a pipe nobody reads.
    """
    full_env = {
        **os.environ,
        "DRAINCTL_APP": app,
        "DRAINCTL_REDIS_URL": redis_url,
        "DYNO": dyno,
        "HEROKU_RELEASE_VERSION": release,
        "DRAINCTL_HEARTBEAT_INTERVAL": "0.3",
        "DEMO_REPORT_SECONDS": "0",
        **env,
    }
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, str(CLOCK)],
            env=full_env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=out,
            text=True,
        )


def instance_doc(client: redis.Redis, app: str, dyno: str) -> dict[str, object] | None:
    """The live heartbeat document of ``dyno``, if it is registered."""
    for record in Registry(client, app).live():
        if record.doc.get("dyno") == dyno:
            return record.doc
    return None


def lease_holder(client: redis.Redis, app: str) -> dict[str, str]:
    """The clock lease hash (empty when nobody holds it)."""
    raw = client.hgetall(f"drainctl:{{{app}}}:clock:lease")
    return {key.decode(): value.decode() for key, value in raw.items()}


def ledger(client: redis.Redis, app: str, hash_name: str = "fires") -> collections.Counter[str]:
    """The example's ledger: ``job@time`` -> how many times that scheduled run executed."""
    raw = client.hgetall(f"demo:{app}:ledger:{hash_name}")
    return collections.Counter({key.decode(): int(value) for key, value in raw.items()})


def grid_report(
    fires: collections.Counter[str], job: str, interval_ms: int
) -> tuple[int, list[str], list[int]]:
    """(runs seen, duplicated runs, missed grid points) of ``job`` from its first to last run."""
    times = sorted(
        round(datetime.fromisoformat(label.split("@", 1)[1]).timestamp() * 1000)
        for label in fires
        if label.startswith(f"{job}@")
    )
    duplicates = [
        label for label, count in fires.items() if label.startswith(f"{job}@") and count > 1
    ]
    if not times:
        return 0, duplicates, []
    seen = set(times)
    expected = range(times[0], times[-1] + 1, interval_ms)
    missed = [ms for ms in expected if ms not in seen]
    return len(times), duplicates, missed


def stop_clock(proc: subprocess.Popen[str]) -> None:
    """Kill the process if it is still alive, and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
