"""drainctl on a real Redis Cluster: three masters with a replica each, real CLI and hosts."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from drainctl.clock.lease import Lease, Verdict
from drainctl.config import Settings
from drainctl.connection import connect
from drainctl.keys import Keys
from tests.e2e.heroku import git_work_tree
from tests.e2e.test_faults import SECRET, assert_each_job_once, drainctl
from tests.host_app import HostProcess
from tests.processes import ROOT
from tests.redis_cluster import RedisCluster, live_states, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    nodes = RedisCluster().start()
    yield nodes
    nodes.cleanup()


def app_keys(cluster: RedisCluster, app: str) -> dict[int, list[bytes]]:
    """Every key of the app on each master, by port; each master scanned on its own."""
    found: dict[int, list[bytes]] = {}
    for node in cluster.nodes:
        client = cluster.client(node)
        try:
            if client.info("replication")["role"] == "master":
                found[node.port] = list(client.scan_iter(match=f"{Keys(app).base}*"))
        finally:
            client.close()
    return found


def run(cluster: RedisCluster, app: str, *args: str, cwd: Path | None = None) -> tuple[int, str]:
    cli = drainctl(cluster.url, app, *args, cwd=cwd)
    stdout, stderr = cli.communicate(timeout=90)
    return cli.returncode, stdout + stderr


def test_control_commands_and_keys_share_one_slot(
    cluster: RedisCluster, app: str, hosts: list[HostProcess], tmp_path: Path
) -> None:
    """status, ping, drain and resume work through a redis+cluster:// URL, and every key of the
    app lives on the master that owns the app's hash slot, with a TTL."""
    hosts += [HostProcess(cluster.url, app, tmp_path / f"j{i}", secret=SECRET) for i in range(2)]
    code, out = run(cluster, app, "status")
    assert code == 0, out
    assert {i["instance_id"] for i in json.loads(out.splitlines()[0])} == {
        h.instance_id for h in hosts
    }
    for command in ("ping", "drain", "resume"):
        code, out = run(cluster, app, command)
        assert code == 0, out
    slot = key_slot(Keys(app).base.encode())
    owner = cluster.owner(slot)
    keys = app_keys(cluster, app)
    assert keys[owner.port]
    assert not any(k for port, k in keys.items() if port != owner.port)
    assert {key_slot(k) for k in keys[owner.port]} == {slot}
    client = cluster.client(owner)
    assert all(client.ttl(k) != -1 for k in keys[owner.port])
    names = [c["name"] for c in client.client_list()]
    client.close()
    for host in hosts:  # two connections per listener, both to the slot's master
        assert names.count(f"drainctl-listener-{host.instance_id}") == 2
    for host in hosts:
        assert_each_job_once(host)


def test_deploy_with_push_cmd(
    cluster: RedisCluster, app: str, hosts: list[HostProcess], tmp_path: Path
) -> None:
    """A whole deploy on the cluster: lock, fence, drain, a push that replaces v1 by v2, and
    the verify that sees v2 up; the old host ran each of its jobs once; unfence then finds
    and lifts the fence kept on v1."""
    old = HostProcess(cluster.url, app, tmp_path / "old", secret=SECRET)
    hosts.append(old)
    pidfile = tmp_path / "new.pid"
    push = push_command(cluster.url, app, old.process.pid, tmp_path / "new", pidfile)
    try:
        code, out = run(
            cluster, app, "deploy", "-t", "worker", "--push-cmd", push, "--stable-for", "1",
            "--verify-timeout", "40", cwd=git_work_tree(tmp_path / "repo"),
        )  # fmt: skip
        assert code == 0, out
        assert json.loads(out.splitlines()[0])["verdict"] == "ok"
        # unfence finds the kept fence by SCAN on the app's master, where all its keys live.
        code, out = run(cluster, app, "unfence")
        assert code == 0, out
        assert json.loads(out.splitlines()[0]) == {"lifted": ["v1"]}
    finally:
        if pidfile.exists():
            kill(int(pidfile.read_text()))
    assert_each_job_once(old)


def push_command(url: str, app: str, old_pid: int, journal: Path, pidfile: Path) -> str:
    """A --push-cmd that does what a platform does: stop v1, start v2 in the background."""
    env = (
        f"DRAINCTL_APP={app} DRAINCTL_REDIS_URL='{url}' DRAINCTL_PROCESS_TYPE=worker "
        f"DRAINCTL_RELEASE=v2 DRAINCTL_HEARTBEAT_INTERVAL=0.5 DRAINCTL_SECRET={SECRET} "
        f"JOB_JOURNAL={journal} PYTHONPATH={ROOT}"
    )
    script = ROOT / "examples" / "fake_jobs.py"
    return f"kill {old_pid}; {env} {sys.executable} {script} >/dev/null 2>&1 & echo $! > {pidfile}"


def kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def test_clock_lease(cluster: RedisCluster, app: str) -> None:
    """The lease and once-key scripts run on the cluster: a newer release takes over, the old
    holder is fenced, and a scheduled run is claimed once."""
    client = connect(Settings(redis_url=cluster.url, app=app))

    def lease(instance: str, release: str) -> Lease:
        options = {"ttl": 15, "once_ttl": 60, "schedule_ttl": 60}
        return Lease(client, Keys(app), instance_id=instance, release=release, **options)

    old, new = lease("a", "v1"), lease("b", "v2")
    token = old.acquire(starting=True).token
    assert old.claim(token, "tick", [1000]) == [1000]
    new_token = new.acquire(starting=True).token
    assert new_token > token
    assert old.acquire().verdict is Verdict.FENCED
    assert new.claim(new_token, "tick", [1000, 2000]) == [2000]
    assert old.claim(token, "tick", [3000]) is None
    new.release_lease(new_token)
    client.close()


@pytest.mark.parametrize("move", ["fail_over", "migrate"])
def test_failover_or_migration_during_a_drain_is_survived(
    cluster: RedisCluster, app: str, hosts: list[HostProcess], tmp_path: Path, move: str
) -> None:
    """The app's master fails over to its replica (CLUSTER FAILOVER), or its slot migrates to
    another master, while a drain waits for a job: the CLI and the listener follow the slot,
    the drain is acknowledged, resume works and no job runs twice."""
    host = HostProcess(cluster.url, app, tmp_path / "j", job_seconds=3, secret=SECRET)
    hosts.append(host)
    wait_for(host.lines, "a job in flight")
    drain = drainctl(cluster.url, app, "drain", "--deadline", "20", "--timeout", "30")
    wait_for(lambda: live_states(cluster.url, app).get(host.instance_id) == "draining", "drain")
    getattr(cluster, move)(key_slot(Keys(app).base.encode()))
    stdout, stderr = drain.communicate(timeout=60)
    assert drain.returncode == 0, stderr
    assert [r["instance"]["instance_id"] for r in json.loads(stdout)["replies"]] == [
        host.instance_id
    ]
    code, out = run(cluster, app, "resume")
    assert code == 0, out
    done = len(host.done())
    wait_for(lambda: len(host.done()) > done, "jobs after the resume")
    assert_each_job_once(host)


def test_a_stale_slot_owner_redirects_the_connection(cluster: RedisCluster, app: str) -> None:
    """A connection to the old master after a failover gets MOVED: drainctl follows it."""
    client = connect(Settings(redis_url=cluster.url, app=app))
    key = Keys(app).deploy_lock
    client.set(key, "x", ex=30)
    cluster.fail_over(key_slot(key.encode()))
    with pytest.raises(redis.ConnectionError, match=r"MOVED|redirected"):
        client.get(key)
    assert client.get(key) == b"x"
    client.delete(key)
    client.close()
