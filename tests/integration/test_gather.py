"""How the requester collects replies: BLMPOP batches, the Redis < 7 fallback, long waits."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from drainctl.adapters.jobs import JobsAdapter
from drainctl.channel import ControlClient
from drainctl.config import Settings
from drainctl.listener import ControlListener
from drainctl.protocol import Command
from tests.integration.conftest import StartListener
from tests.integration.test_listener import run_job_in_thread
from tests.redis_server import RedisServer


@pytest.fixture
def redis_without_blmpop() -> Iterator[RedisServer]:
    """A server that refuses BLMPOP, as Redis 6 does."""
    server = RedisServer(None, "--rename-command", "BLMPOP", "").start()
    yield server
    server.cleanup()


def test_every_reply_is_gathered_in_batches(settings: Settings, start_listener: StartListener):
    """With BLMPOP, replies that queued up together are taken in one call, none twice or lost."""
    listeners = [start_listener() for _ in range(8)]
    client = ControlClient(settings)
    for _ in range(5):
        outcome = client.send(Command.PING, timeout=10)
        assert outcome.ok
        assert len(outcome.replies) == len(listeners)
    assert client._multipop


def test_servers_without_blmpop_fall_back_to_blpop(redis_without_blmpop: RedisServer, app: str):
    """On a server that has no BLMPOP the requester learns it once and still gets every reply."""
    settings = Settings(redis_url=redis_without_blmpop.url, app=app, heartbeat_interval=0.5)
    listeners = [
        ControlListener(process_type="worker", settings=settings).start() for _ in range(4)
    ]
    try:
        client = ControlClient(settings)
        for _ in range(3):
            outcome = client.send(Command.PING, timeout=10)
            assert outcome.ok
            assert len(outcome.replies) == 4
        assert not client._multipop
    finally:
        for listener in listeners:
            listener.stop()


def test_waits_longer_than_the_socket_timeout(settings: Settings, start_listener: StartListener):
    """A drain acknowledged after the socket's read timeout still arrives (waits are capped)."""
    jobs = JobsAdapter()
    start_listener(adapter=jobs)
    worker = run_job_in_thread(jobs, "slow", 1.0)
    # Reads time out after block_timeout + connect_timeout = 0.4 s; the ack takes about 1 s.
    quick_reads = settings.replace(block_timeout=0.2, connect_timeout=0.2)
    outcome = ControlClient(quick_reads).send(Command.DRAIN, args={"deadline": 5}, timeout=8)
    worker.join()
    assert outcome.ok
    assert outcome.replies[0].data["finished"] == ["slow"]
