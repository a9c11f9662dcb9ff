"""``celery beat -S drainctl.adapters.celery_beat:Scheduler`` as real processes with a real
worker running the ledger task on the test's private Redis."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import redis

from drainctl.channel import ControlClient, Target
from drainctl.config import Settings
from drainctl.keys import Keys
from drainctl.protocol import Command
from tests.beats import beat_docs, grid, lease_token, ledger, spawn, stop
from tests.polling import wait_for

TICK_MS = 100
Spawn = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def start(settings: Settings, tmp_path: Path) -> Iterator[Spawn]:
    """Start beats and workers of the test's app; all killed at the end."""
    procs: list[subprocess.Popen[str]] = []
    app = settings.require_app()

    def start_one(kind: str, release: str, *extra: str, **env: str) -> subprocess.Popen[str]:
        log = tmp_path / f"{kind}-{release}-{len(procs)}.log"
        env = {"BEAT_TICK": str(TICK_MS / 1000)} | env
        proc = spawn(kind, settings.redis_url, app, release, log, *extra, **env)
        procs.append(proc)
        return proc

    yield start_one
    for proc in procs:
        stop(proc)
    for log in sorted(tmp_path.glob("*.log")):
        print(f"--- {log.name}\n{log.read_text()[-3000:]}")


def ticks(client: redis.Redis, app: str) -> int:
    return grid(ledger(client, app), "tick", TICK_MS)[0]


def held_by(client: redis.Redis, app: str, proc: subprocess.Popen[str]) -> bool:
    doc = beat_docs(client, app).get(proc.pid)
    return doc is not None and doc.get("lease") == "held"


def test_zombie_beat_of_the_old_release_sends_nothing_twice(
    settings: Settings, redis_client: redis.Redis, start: Spawn
):
    """v1 keeps running beside v2 (a zombie): v2 takes the lease at start, v1 is fenced at its
    next send and shows ``fenced``; over 100+ runs none is sent twice and none is missed."""
    app = settings.require_app()
    start("worker", "v1")
    old = start("beat", "v1")
    wait_for(lambda: ticks(redis_client, app) >= 10, timeout=20)
    new = start("beat", "v2")
    wait_for(lambda: held_by(redis_client, app, new), timeout=20)
    wait_for(lambda: beat_docs(redis_client, app).get(old.pid, {}).get("state") == "fenced")
    wait_for(lambda: ticks(redis_client, app) >= 110, timeout=25)
    runs, duplicates, missed = grid(ledger(redis_client, app), "tick", TICK_MS)
    assert runs >= 110
    assert duplicates == []
    assert missed == 0
    assert old.poll() is None  # the zombie is alive, just fenced
    status = subprocess.run(
        [
            sys.executable,
            "-m",
            "drainctl",
            "--app",
            app,
            "--redis-url",
            settings.redis_url,
            "status",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "fenced" in status
    assert f"held token {lease_token(redis_client, app)} next 20" in status


def test_graceful_deploy_misses_and_repeats_nothing(
    settings: Settings, redis_client: redis.Redis, start: Spawn
):
    """Drain v1 over the control channel, SIGTERM it, start v2 a second later: the drain reply
    names each entry's next due time, the lease is released on exit, and the runs due in the gap
    are sent once each by v2."""
    app = settings.require_app()
    start("worker", "v1")
    old = start("beat", "v1")
    wait_for(lambda: ticks(redis_client, app) >= 10, timeout=20)
    outcome = ControlClient(settings).send(
        Command.DRAIN,
        target=Target(instance_id=str(beat_docs(redis_client, app)[old.pid]["instance_id"])),
        args={"deadline": 5},
        timeout=10,
    )
    assert outcome.ok
    saved = outcome.replies[0].data["handed_back"]
    assert sorted(entry.split("@")[0] for entry in saved) == ["minutely", "tick"]
    before = ticks(redis_client, app)
    old.send_signal(signal.SIGTERM)
    assert old.wait(15) == 0
    assert lease_token(redis_client, app) is None
    assert ticks(redis_client, app) == before  # drained: nothing sent since
    new = start("beat", "v2")
    wait_for(lambda: ticks(redis_client, app) >= before + 30, timeout=20)
    _runs, duplicates, missed = grid(ledger(redis_client, app), "tick", TICK_MS)
    assert duplicates == []
    assert missed == 0
    new.send_signal(signal.SIGTERM)
    assert new.wait(15) == 0


def test_sigkilled_holder_is_replaced_and_the_gap_sent_once(
    settings: Settings, redis_client: redis.Redis, start: Spawn
):
    """Two beats of one release: the standby takes over after the holder is SIGKILLed (lease TTL
    3 s) and sends each run due meanwhile once."""
    app = settings.require_app()
    start("worker", "v1")
    first = start("beat", "v1", DRAINCTL_LEASE_TTL="3")
    wait_for(lambda: held_by(redis_client, app, first), timeout=20)
    second = start("beat", "v1", DRAINCTL_LEASE_TTL="3")
    wait_for(lambda: beat_docs(redis_client, app).get(second.pid, {}).get("lease") == "standby")
    wait_for(lambda: ticks(redis_client, app) >= 10, timeout=20)
    token = lease_token(redis_client, app)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    killed_at = ticks(redis_client, app)
    wait_for(lambda: held_by(redis_client, app, second), timeout=20)
    assert (lease_token(redis_client, app) or 0) > (token or 0)
    wait_for(lambda: ticks(redis_client, app) >= killed_at + 40, timeout=20)
    _runs, duplicates, missed = grid(ledger(redis_client, app), "tick", TICK_MS)
    assert duplicates == []
    assert missed == 0


def test_crontab_entry_resumes_across_a_deploy(
    settings: Settings, redis_client: redis.Redis, start: Spawn
):
    """A crontab entry last sent two minutes ago: v1 sends the two minutes due since (each,
    once), drains and exits; v2 resumes after them and sends neither again."""
    app = settings.require_app()
    keys = Keys(app)
    minute = int(datetime.now(timezone.utc).timestamp()) // 60 * 60_000
    redis_client.hset(keys.clock_last, "minutely", minute - 120_000)
    redis_client.expire(keys.clock_last, 600)
    start("worker", "v1")
    old = start("beat", "v1")
    expected = {f"minutely@{minute - 60_000}", f"minutely@{minute}"}
    wait_for(lambda: expected <= set(ledger(redis_client, app)), timeout=20)
    old.send_signal(signal.SIGTERM)
    assert old.wait(15) == 0
    new = start("beat", "v2")
    wait_for(lambda: held_by(redis_client, app, new), timeout=20)
    wait_for(lambda: ticks(redis_client, app) >= 40, timeout=20)
    minutely = {k: n for k, n in ledger(redis_client, app).items() if k.startswith("minutely@")}
    current = int(datetime.now(timezone.utc).timestamp()) // 60 * 60_000
    assert set(minutely) - expected <= {f"minutely@{current}"}  # a minute may have turned
    assert all(n == 1 for n in minutely.values())


def test_sigterm_during_a_send_lets_it_finish_then_closes(
    settings: Settings, redis_client: redis.Redis, start: Spawn, tmp_path: Path
):
    """SIGTERM while a send waits on a slow broker: the send completes (its run is in the
    ledger), then Celery's handler closes the scheduler (it used to wait on the scheduler's own
    lock forever) and the beat exits 0 with the lease released."""
    app = settings.require_app()
    old = start("beat", "v1", BEAT_SEND_DELAY="1.0")
    log = next(tmp_path.glob("beat-v1-*.log"))
    wait_for(lambda: "publishing..." in log.read_text(), timeout=20)
    old.send_signal(signal.SIGTERM)
    assert old.wait(15) == 0
    output = log.read_text()
    assert "beat: drained on exit" in output
    assert lease_token(redis_client, app) is None
    begun = output.count("publishing...")
    start("worker", "v1")  # runs what was published: every send begun, none cut off
    wait_for(lambda: ticks(redis_client, app) == begun, timeout=20, what=f"{begun} ticks")


def test_worker_beat_with_two_workers_sends_from_one(
    settings: Settings, redis_client: redis.Redis, start: Spawn
):
    """``celery worker --beat`` on two workers (``install_beat``): both beats register, one holds
    the lease, and no run is sent twice."""
    app = settings.require_app()
    first = start("worker", "v1", "--beat", "-s", "/dev/null")
    second = start("worker", "v1", "--beat", "-s", "/dev/null")
    wait_for(lambda: len(beat_docs(redis_client, app)) == 2, timeout=25)
    wait_for(lambda: ticks(redis_client, app) >= 50, timeout=25)
    leases = sorted(str(doc.get("lease")) for doc in beat_docs(redis_client, app).values())
    assert leases == ["held", "standby"]
    _runs, duplicates, missed = grid(ledger(redis_client, app), "tick", TICK_MS)
    assert duplicates == []
    assert missed == 0
    assert first.poll() is None
    assert second.poll() is None
