"""Faults with real processes and a real redis-server: restarts, outages, SIGKILL, a bad link."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from drainctl.adapters.base import DrainReport, NullAdapter
from drainctl.channel import ControlClient, Outcome
from drainctl.config import Settings
from drainctl.keys import Keys
from drainctl.listener import ControlListener
from drainctl.protocol import Command
from drainctl.registry import Registry
from tests.conftest import assert_no_lasting_keys
from tests.e2e.heroku import git_work_tree
from tests.host_app import HostProcess
from tests.polling import wait_for
from tests.processes import ROOT
from tests.redis_server import RedisServer
from tests.tcp_proxy import TcpProxy

SECRET = "fault-test-secret"
pytestmark = pytest.mark.slow


@pytest.fixture
def own_redis(app: str) -> Iterator[RedisServer]:
    """A redis-server of the test's own, free to be stopped and restarted."""
    server = RedisServer().start()
    yield server
    if server.process is not None:
        assert_no_lasting_keys(server.url, app)
    server.cleanup()


def drainctl(
    url: str, app: str, *args: str, cwd: Path | None = None, **env: str
) -> subprocess.Popen[str]:
    """The real CLI in a subprocess, signing with SECRET."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "DRAINCTL_SECRET": SECRET, **env}
    command = ["--redis-url", url, "--app", app]
    # deploy has its own --json; the other commands take the global one.
    command += [*args, "--json"] if args[0] == "deploy" else ["--json", *args]
    return subprocess.Popen(
        [sys.executable, "-m", "drainctl", *command],
        cwd=cwd,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def states(url: str, app: str) -> dict[str, str]:
    """Instance id -> state as announced in the registry (empty while Redis is down)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        return {r.instance_id: str(r.doc.get("state")) for r in Registry(client, app).live()}
    except redis.ConnectionError:
        return {}
    finally:
        client.close()


def assert_each_job_once(host: HostProcess) -> None:
    """Job numbers start and finish once each, in order: nothing ran twice, nothing was skipped."""
    started = [int(line.split()[1]) for line in host.lines() if line.startswith("start ")]
    assert started == list(range(len(started)))
    assert host.done() == started[: len(host.done())]


def test_redis_restart_during_deploy_fails_closed_and_app_resumes(
    own_redis: RedisServer, app: str, hosts: list[HostProcess], tmp_path: Path
) -> None:
    """Redis restarts while ``drainctl deploy`` waits on a drain: the deploy exits 3 or 6 and
    pushes nothing; the listener reconnects and re-registers (its fence, gone with the old data,
    lifts nothing by itself) and the deploy's rollback, retrying until it is back, resumes it;
    its jobs go on, none run twice."""
    host = HostProcess(own_redis.url, app, tmp_path / "journal", job_seconds=3, secret=SECRET)
    hosts.append(host)
    wait_for(host.lines, what="a job in flight")
    repo = git_work_tree(tmp_path / "repo")
    pushed = tmp_path / "pushed"
    deploy = drainctl(
        own_redis.url, app, "deploy", "-t", "worker", "--push-cmd", f"touch {pushed}",
        "--drain-deadline", "10", "--ack-timeout", "20", cwd=repo,
    )  # fmt: skip
    wait_for(lambda: states(own_redis.url, app).get(host.instance_id) == "draining")
    own_redis.stop()
    own_redis.start()
    _, stderr = deploy.communicate(timeout=60)
    assert deploy.returncode in (3, 6), stderr
    assert not pushed.exists()
    wait_for(
        lambda: states(own_redis.url, app).get(host.instance_id) == "running",
        what="the listener back and resumed",
    )
    done_then = len(host.done())
    wait_for(lambda: len(host.done()) > done_then, what="jobs after the restart")
    assert_each_job_once(host)


def test_redis_unreachable_exits_6_quickly_and_hosts_keep_working(
    own_redis: RedisServer, app: str, hosts: list[HostProcess], tmp_path: Path
) -> None:
    """With Redis down, ``drainctl drain`` exits 6 within the connect timeout, names the URL with
    its password masked, and the host process goes on running its jobs."""
    host = HostProcess(own_redis.url, app, tmp_path / "journal", job_seconds=0.02)
    hosts.append(host)
    own_redis.stop()
    before = len(host.done())
    wait_for(lambda: len(host.done()) >= before + 20, what="jobs during the outage")
    url = f"redis://deploy:hunter2@127.0.0.1:{own_redis.port}/0"
    started = time.monotonic()
    cli = drainctl(url, app, "drain", DRAINCTL_CONNECT_TIMEOUT="3")
    stdout, stderr = cli.communicate(timeout=30)
    elapsed = time.monotonic() - started
    assert cli.returncode == 6, stderr
    assert elapsed < 3.0
    assert f"redis://deploy:***@127.0.0.1:{own_redis.port}/0" in stderr
    assert "hunter2" not in stdout + stderr
    assert host.process.poll() is None
    own_redis.start()
    assert_each_job_once(host)


def test_listener_sigkilled_mid_drain_is_reported_by_instance(
    own_redis: RedisServer, app: str, hosts: list[HostProcess], tmp_path: Path
) -> None:
    """A listener killed while draining shows up as missing, by instance id; the healthy one
    acknowledges; the CLI exits 3 at its timeout instead of hanging."""
    healthy = HostProcess(own_redis.url, app, tmp_path / "a", job_seconds=0.1, secret=SECRET)
    victim = HostProcess(own_redis.url, app, tmp_path / "b", job_seconds=5, secret=SECRET)
    hosts += [healthy, victim]
    wait_for(victim.lines, what="the victim's job in flight")
    drain = drainctl(own_redis.url, app, "drain", "--deadline", "10", "--timeout", "3")
    wait_for(lambda: states(own_redis.url, app).get(victim.instance_id) == "draining")
    victim.kill()
    stdout, stderr = drain.communicate(timeout=30)
    assert drain.returncode == 3, stderr
    outcome = json.loads(stdout)
    assert [m["instance_id"] for m in outcome["missing"]] == [victim.instance_id]
    assert [r["instance"]["instance_id"] for r in outcome["replies"]] == [healthy.instance_id]
    assert "1 did not answer" in stderr


class CountingAdapter(NullAdapter):
    """Counts how often a drain was executed."""

    def __init__(self) -> None:
        self.drains = 0

    def drain(self, deadline: float) -> DrainReport:
        self.drains += 1
        return super().drain(deadline)


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[TcpProxy]:
    link = TcpProxy(redis_server.port)
    yield link
    link.close()


def proxied_listener(
    settings: Settings, proxy: TcpProxy, secrets: tuple[str, ...]
) -> tuple[ControlListener, CountingAdapter]:
    adapter = CountingAdapter()
    listener = ControlListener(
        adapter=adapter,
        settings=settings.replace(
            process_type="worker", redis_url=proxy.url, reconnect_cap=0.3, secrets=secrets
        ),
    )
    return listener.start(), adapter


def test_added_latency_still_answers_each_request_once(settings: Settings, proxy: TcpProxy) -> None:
    """With 100 ms added per hop between listener and Redis, ping, drain and resume all succeed,
    and the drain runs once."""
    listener, adapter = proxied_listener(settings, proxy, (SECRET,))
    try:
        proxy.delay = 0.1
        client = ControlClient(settings.replace(secrets=(SECRET,)))
        for command in (Command.PING, Command.DRAIN, Command.RESUME):
            outcome = client.send(command, args={"deadline": 0}, timeout=5)
            assert outcome.ok
            # The request crossed the proxy to the listener and the reply back: two delays.
            assert outcome.latency[listener.identity.instance_id] >= 0.2
        assert adapter.drains == 1
    finally:
        proxy.delay = 0
        listener.stop()


@pytest.mark.parametrize("secrets", [(), (SECRET,)], ids=["unsigned", "signed"])
def test_cut_link_request_answered_after_recovery_and_never_twice(
    settings: Settings, proxy: TcpProxy, redis_client: redis.Redis, secrets: tuple[str, ...]
) -> None:
    """A drain sent while the listener's link is down waits in the inbox and is answered once
    the link is back; the same request delivered again is not executed a second time."""
    listener, adapter = proxied_listener(settings, proxy, secrets)
    client = ControlClient(settings.replace(secrets=secrets))
    try:
        connections = proxy.connections
        proxy.cut()
        outcomes: list[Outcome] = []
        sender = threading.Thread(
            target=lambda: outcomes.append(
                client.send(Command.DRAIN, args={"deadline": 0}, timeout=30)
            )
        )
        sender.start()
        inbox = Keys(listener.identity.app).inbox(listener.identity.instance_id)
        raw = wait_for(lambda: redis_client.lindex(inbox, 0), what="the request in the inbox")
        proxy.restore()
        sender.join(35)
        assert outcomes[0].ok
        assert adapter.drains == 1
        assert proxy.connections > connections, "the listener should have reconnected"
        redis_client.rpush(inbox, raw)
        redis_client.pexpire(inbox, 10_000)
        # The inbox is served in order: once this ping is answered, the duplicate was handled.
        assert client.send(Command.PING, timeout=5).ok
        assert adapter.drains == 1
    finally:
        listener.stop()
