"""ControlListener robustness: disconnects, restarts, failing handlers, garbage, drains."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from drainctl.adapters.base import DrainReport
from drainctl.adapters.jobs import JobsAdapter
from drainctl.channel import ControlClient
from drainctl.config import Settings
from drainctl.listener import ControlListener
from drainctl.protocol import Command, State
from tests.integration.conftest import StartListener
from tests.polling import wait_for
from tests.processes import spawn_loop_worker, stop
from tests.redis_server import RedisServer


def run_job_in_thread(jobs: JobsAdapter, name: str, seconds: float) -> threading.Thread:
    job = jobs.start(name)
    assert job is not None

    def work() -> None:
        with job:
            time.sleep(seconds)

    thread = threading.Thread(target=work)
    thread.start()
    return thread


class BrokenAdapter:
    """An adapter whose every method raises."""

    def drain(self, deadline: float) -> DrainReport:
        raise RuntimeError("drain exploded")

    def resume(self) -> None:
        raise RuntimeError("resume exploded")

    def status(self) -> dict[str, Any]:
        raise RuntimeError("status exploded")


def quick_settings(url: str, app: str, heartbeat_interval: float = 0.5) -> Settings:
    """Fast beats and reconnects for tests that break the connection on purpose."""
    return Settings(
        redis_url=url,
        app=app,
        process_type="worker",
        heartbeat_interval=heartbeat_interval,
        block_timeout=2.0,
        reconnect_cap=0.3,
    )


# -- delivery across a disconnect ------------------------------------------------------------


@pytest.fixture
def acl_server() -> Iterator[RedisServer]:
    """A private server where the listener connects as a user we can lock out and let back in."""
    server = RedisServer().start()
    admin = redis.Redis(port=server.port)
    admin.acl_setuser("lst", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all"])
    admin.close()
    yield server
    server.cleanup()


def test_request_sent_while_listener_reconnects_is_delivered(
    acl_server: RedisServer, app: str, caplog: pytest.LogCaptureFixture
):
    """Lock the listener out, send a request, let it back in: it handles the waiting request."""
    caplog.set_level(logging.WARNING, logger="drainctl.listener")
    url = f"redis://lst:pw@127.0.0.1:{acl_server.port}/0"
    listener = ControlListener(settings=quick_settings(url, app)).start()
    admin = redis.Redis(port=acl_server.port)
    client = ControlClient(Settings(redis_url=acl_server.url, app=app))
    try:
        admin.acl_setuser("lst", enabled=False)
        admin.client_kill_filter(user="lst")
        wait_for(lambda: "lost Redis" in caplog.text)
        outcome_box: list[Any] = []
        sender = threading.Thread(
            target=lambda: outcome_box.append(client.send(Command.PING, timeout=15))
        )
        sender.start()
        wait_for(lambda: admin.llen(client.keys.inbox(listener.identity.instance_id)) == 1)
        # Several failed reconnects must still make a single log line.
        wait_for(lambda: listener.outage.failures >= 3)
        admin.acl_setuser("lst", enabled=True)
        sender.join()
        assert outcome_box[0].ok
        assert [r.instance_id for r in outcome_box[0].replies] == [listener.identity.instance_id]
        assert caplog.text.count("lost Redis") == 1
        wait_for(lambda: "is back" in caplog.text)
        assert caplog.text.count("is back") == 1
        assert "pw@" not in caplog.text
    finally:
        listener.stop()
        admin.close()


def test_listener_survives_redis_restart(app: str):
    """After redis-server restarts (data kept), the listener reconnects and answers again."""
    server = RedisServer(None, "--appendonly", "yes").start()
    settings = quick_settings(server.url, app, heartbeat_interval=0.5)
    listener = ControlListener(settings=settings).start()
    try:
        assert ControlClient(settings).send(Command.PING).ok
        server.stop()
        server.start()
        outcome = ControlClient(settings).send(Command.PING, timeout=10)
        assert outcome.ok
        assert outcome.replies[0].instance_id == listener.identity.instance_id
    finally:
        listener.stop()
        server.cleanup()


def test_entry_reappears_after_redis_restarts_empty(app: str):
    """Redis restarted without persistence: the next heartbeat registers the instance again."""
    server = RedisServer().start()
    settings = quick_settings(server.url, app, heartbeat_interval=0.3)
    listener = ControlListener(settings=settings).start()
    try:
        server.stop()
        server.start()
        client = ControlClient(settings)
        wait_for(lambda: [r.instance_id for r in client.live()] == [listener.identity.instance_id])
        assert client.send(Command.PING, timeout=5).ok
    finally:
        listener.stop()
        server.cleanup()


# -- failing handlers and garbage ------------------------------------------------------------


def test_failing_adapter_becomes_error_replies(settings: Settings, start_listener: StartListener):
    """Exceptions in handlers are answered as errors; the listener keeps serving."""
    listener = start_listener(adapter=BrokenAdapter())
    client = ControlClient(settings)
    for command, message in [
        (Command.DRAIN, "drain exploded"),
        (Command.STATUS, "status exploded"),
        (Command.RESUME, "resume exploded"),
    ]:
        outcome = client.send(command, args={"deadline": 1}, timeout=5)
        assert [r.error for r in outcome.failed] == [f"RuntimeError: {message}"]
    assert client.send(Command.PING).ok
    assert all(thread.is_alive() for thread in listener._threads)


def test_host_process_keeps_running_through_bad_requests(
    settings: Settings, redis_client: redis.Redis
):
    """A real host process keeps doing its jobs while its listener gets garbage and bad drains."""
    proc, instance_id = spawn_loop_worker(settings.redis_url, str(settings.app))
    try:
        client = ControlClient(settings)
        inbox = client.keys.inbox(instance_id)
        redis_client.rpush(inbox, b"\xff\xfe", b"[]", b'{"v": 99}', b"x" * 100_000)
        redis_client.pexpire(inbox, 10_000)
        bad = client.send(Command.DRAIN, args={"deadline": "soon"}, timeout=5)
        assert "deadline must be a non-negative number" in (bad.failed[0].error or "")
        assert proc.stdout is not None
        before = int(proc.stdout.readline().split()[1])
        after = int(proc.stdout.readline().split()[1])
        assert after > before
        assert proc.poll() is None
        assert client.send(Command.PING).ok
    finally:
        stop(proc)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
request_like = st.fixed_dictionaries(
    {},
    optional={
        "v": st.sampled_from([1, 2, "1", None]),
        "command": st.sampled_from(["ping", "drain", "resume", "status", "nuke", 3]),
        "sender": json_values,
        "sent_at": json_values,
        "expires_at": json_values,
        "reply_to": json_values,
        "args": json_values,
        "id": json_values,
    },
)


@pytest.fixture
def fuzz_listener(start_listener: StartListener) -> ControlListener:
    """One listener shared by every hypothesis example of a test."""
    return start_listener()


@hsettings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(message=st.one_of(st.binary(max_size=200), request_like.map(json.dumps)))
def test_hypothesis_messages_never_kill_the_listener(
    settings: Settings, fuzz_listener: ControlListener, redis_client: redis.Redis, message: Any
):
    """Whatever lands in an inbox, the listener survives and answers the next valid ping."""
    client = ControlClient(settings)
    inbox = client.keys.inbox(fuzz_listener.identity.instance_id)
    redis_client.rpush(inbox, message)
    redis_client.pexpire(inbox, 10_000)
    assert client.send(Command.PING, timeout=5).ok
    assert fuzz_listener.state is State.RUNNING
