"""drainctl behind Redis Sentinel: a master, a replica, three sentinels; the master is killed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.heroku import git_work_tree
from tests.e2e.test_cluster import kill, push_command
from tests.e2e.test_faults import SECRET, assert_each_job_once, drainctl
from tests.failover_scenarios import sentinel_clock
from tests.host_app import HostProcess
from tests.redis_cluster import SentinelSetup, live_states, wait_for
from tests.redis_server import RedisServer

pytestmark = pytest.mark.slow


@pytest.fixture
def sentinel() -> Iterator[SentinelSetup]:
    setup = SentinelSetup().start()
    yield setup
    setup.cleanup()


def settled(sentinel: SentinelSetup, app: str, host: HostProcess, state: str) -> bool:
    """The host announces ``state`` on the master the sentinels name now."""
    return live_states(sentinel.url, app).get(host.instance_id) == state


def test_master_killed_during_a_drain(
    sentinel: SentinelSetup, app: str, hosts: list[HostProcess], tmp_path: Path
) -> None:
    """SIGKILL the master while a drain waits on a job: the sentinels promote the replica, the
    listener and the CLI follow; the drain is acknowledged or reported missing (never run
    twice), the app can be resumed through the same URL and no job runs twice."""
    host = HostProcess(sentinel.url, app, tmp_path / "j", job_seconds=3, secret=SECRET)
    hosts.append(host)
    wait_for(host.lines, "a job in flight")
    drain = drainctl(sentinel.url, app, "drain", "--deadline", "20", "--timeout", "30")
    wait_for(lambda: settled(sentinel, app, host, "draining"), "the drain")
    killed = sentinel.master.port
    assert sentinel.master.process is not None
    sentinel.master.process.kill()
    _, stderr = drain.communicate(timeout=60)
    assert drain.returncode in (0, 3), stderr
    assert sentinel.master_port() != killed
    wait_for(lambda: live_states(sentinel.url, app).get(host.instance_id), "the listener back")
    resume = drainctl(sentinel.url, app, "resume", "--timeout", "10")
    _, stderr = resume.communicate(timeout=60)
    assert resume.returncode == 0, stderr
    wait_for(lambda: settled(sentinel, app, host, "running"), "the host running again")
    done = len(host.done())
    wait_for(lambda: len(host.done()) > done, "jobs after the failover")
    assert_each_job_once(host)


def test_master_killed_during_a_deploys_push(
    sentinel: SentinelSetup, app: str, hosts: list[HostProcess], tmp_path: Path
) -> None:
    """The push itself kills the master (and replaces v1 by v2, as a platform does): the deploy
    either completes (v2 verified on the promoted replica) or fails closed; v1 ran each job
    once and v2 is up on the new master."""
    old = HostProcess(sentinel.url, app, tmp_path / "old", secret=SECRET)
    hosts.append(old)
    pidfile = tmp_path / "new.pid"
    push = push_command(sentinel.url, app, old.process.pid, tmp_path / "new", pidfile)
    assert sentinel.master.process is not None
    push = f"kill -9 {sentinel.master.process.pid}; {push}"
    try:
        deploy = drainctl(
            sentinel.url, app, "deploy", "-t", "worker", "--push-cmd", push,
            "--stable-for", "1", "--verify-timeout", "60", cwd=git_work_tree(tmp_path / "repo"),
        )  # fmt: skip
        stdout, stderr = deploy.communicate(timeout=120)
        verdict = json.loads(stdout.splitlines()[0])["verdict"] if stdout else None
        assert (deploy.returncode, verdict) == (0, "ok") or deploy.returncode in (5, 6), stderr
        wait_for((tmp_path / "new").exists, "v2 running jobs")
        started = [line for line in (tmp_path / "new").read_text().splitlines() if "start" in line]
        assert started == [f"start {i}" for i in range(len(started))]
    finally:
        if pidfile.exists():
            kill(int(pidfile.read_text()))
    assert_each_job_once(old)


def test_failover_to_a_lagging_replica_fires_no_run_twice(
    sentinel: SentinelSetup, redis_server: RedisServer, tmp_path: Path
) -> None:
    """The replica is stopped while the holder clock fires 10 runs, then promoted when the
    master dies: it lacks those runs' once-keys and last-fire times, yet no run fires twice."""
    count = sentinel_clock(sentinel, redis_server.url, tmp_path, lagging=True)
    assert count.seen >= 60
    assert count.duplicates == 0
