"""The example clock in real processes: SIGTERM mid-job, a zombie old release, SIGKILL."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from drainctl.config import Settings
from tests.clocks import grid_report, instance_doc, lease_holder, ledger, spawn_clock, stop_clock
from tests.polling import wait_for
from tests.processes import ROOT

pytestmark = pytest.mark.slow

SpawnClock = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def clock(settings: Settings, tmp_path: Path) -> Iterator[SpawnClock]:
    """Start example clocks for this test's app; any still alive at the end are killed."""
    procs: list[subprocess.Popen[str]] = []

    def spawn(dyno: str, release: str, **env: str) -> subprocess.Popen[str]:
        assert settings.app is not None
        log = tmp_path / f"{dyno}-{release}.log"
        procs.append(spawn_clock(settings.redis_url, settings.app, dyno, release, log, **env))
        return procs[-1]

    yield spawn
    for proc in procs:
        stop_clock(proc)


def lease_of(client: redis.Redis, app: str, dyno: str) -> object:
    """Where ``dyno`` says it stands with the lease (held, standby, fenced), None if unknown."""
    return (instance_doc(client, app, dyno) or {}).get("lease")


def holder_dyno(redis_client: redis.Redis, app: str) -> str | None:
    holder = lease_holder(redis_client, app).get("instance")
    for dyno in ("clock.1", "clock.2"):
        doc = instance_doc(redis_client, app, dyno)
        if doc is not None and doc.get("instance_id") == holder:
            return dyno
    return None


def test_sigterm_mid_job_lets_the_job_finish_and_exits_0(
    settings: Settings, redis_client: redis.Redis, clock: SpawnClock
):
    """SIGTERM while ``report`` runs: it finishes, the schedule is saved, lease freed, exit 0."""
    app = settings.app
    assert app is not None
    proc = clock(
        "clock.1", "v1", DEMO_TICK_SECONDS="60", DEMO_REPORT_SECONDS="1", DEMO_REPORT_DURATION="1.5"
    )
    wait_for(lambda: len(ledger(redis_client, app, "started")) > 0, timeout=15)
    started = next(iter(ledger(redis_client, app, "started")))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    assert ledger(redis_client, app)[started] == 1  # the run in flight at SIGTERM completed
    reports = {label for label in ledger(redis_client, app) if label.startswith("report@")}
    assert reports == set(ledger(redis_client, app, "started"))  # every run that began, finished
    assert lease_holder(redis_client, app) == {}  # released: a successor need not wait for expiry
    assert sorted(redis_client.hkeys(f"drainctl:{{{app}}}:clock:next")) == [b"report", b"tick"]


def test_zombie_old_release_never_fires_next_to_a_new_release(
    settings: Settings, redis_client: redis.Redis, clock: SpawnClock
):
    """Over >= 100 runs every 50 ms, an old clock alive next to a new one: none doubled or lost.

    The new release takes the lease at start; the old one is fenced at its next fire, says so in
    ``drainctl status``, and never fires again. The ledger the jobs write is checked on the grid.
    """
    app = settings.app
    assert app is not None
    fast = {"DEMO_TICK_SECONDS": "0.05"}
    old = clock("clock.1", "v41", **fast)
    wait_for(lambda: len(ledger(redis_client, app)) >= 30, timeout=20)
    new = clock("clock.2", "v42", **fast)
    wait_for(lambda: holder_dyno(redis_client, app) == "clock.2", timeout=20)
    wait_for(lambda: (instance_doc(redis_client, app, "clock.1") or {}).get("state") == "fenced")
    status = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "drainctl"),
            "--redis-url",
            settings.redis_url,
            "--app",
            app,
            "--json",
            "status",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    states = {doc["dyno"]: doc["state"] for doc in json.loads(status.stdout)}
    assert states == {"clock.1": "fenced", "clock.2": "running"}
    fenced_at = len(ledger(redis_client, app))
    wait_for(lambda: len(ledger(redis_client, app)) >= max(130, fenced_at + 60), timeout=30)
    assert old.poll() is None  # the zombie is alive all along
    for proc in (new, old):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    runs, duplicates, missed = grid_report(ledger(redis_client, app), "tick", 50)
    assert runs >= 130
    assert duplicates == []
    assert missed == []


def test_sigkilled_holder_is_replaced_within_the_lease_ttl(
    settings: Settings, redis_client: redis.Redis, clock: SpawnClock
):
    """A standby of the same release takes over within the TTL of a SIGKILL, and catches up.

    No run is doubled, and none is lost except the one the killed clock had claimed and was
    running (a claimed run counts as fired: re-running it could double it next to a zombie).
    """
    app = settings.app
    assert app is not None
    ttl = 3.0
    env = {"DEMO_TICK_SECONDS": "0.1", "DRAINCTL_LEASE_TTL": str(ttl)}
    first = clock("clock.1", "v7", **env)
    wait_for(lambda: holder_dyno(redis_client, app) == "clock.1", timeout=20)
    second = clock("clock.2", "v7", **env)
    wait_for(lambda: lease_of(redis_client, app, "clock.2") == "standby", timeout=20)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    seconds, micros = redis_client.time()
    killed_at = seconds + micros / 1e6
    wait_for(lambda: holder_dyno(redis_client, app) == "clock.2", timeout=ttl + 2)
    assert float(lease_holder(redis_client, app)["acquired_at"]) - killed_at <= ttl
    taken = len(ledger(redis_client, app))
    wait_for(lambda: len(ledger(redis_client, app)) >= taken + 10, timeout=10)
    second.send_signal(signal.SIGTERM)
    assert second.wait(20) == 0
    _, duplicates, missed = grid_report(ledger(redis_client, app), "tick", 100)
    assert duplicates == []
    assert len(missed) <= 1
    assert all(redis_client.exists(f"drainctl:{{{app}}}:clock:once:tick:{ms}") for ms in missed)
