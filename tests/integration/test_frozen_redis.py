"""A Redis that stops answering (SIGSTOP): reads give up after the socket timeout, now kept by
the kernel (drainctl.sockets), and everything works again once it answers."""

from __future__ import annotations

import signal
import socket
import struct
import time
from collections.abc import Iterator

import pytest
import redis

from drainctl.channel import ControlClient
from drainctl.config import Settings
from drainctl.connection import Line, connect, translate_outage
from drainctl.errors import RedisUnavailable
from drainctl.listener import ControlListener
from drainctl.protocol import Command
from drainctl.topology import ResolvedConnection
from tests.polling import wait_for
from tests.redis_server import RedisServer

# Socket timeouts of block_timeout + connect_timeout: 0.5 s.
QUICK = {"block_timeout": 0.3, "connect_timeout": 0.2}


@pytest.fixture
def quick(private_redis: RedisServer, app: str) -> Settings:
    return Settings(redis_url=private_redis.url, app=app, heartbeat_interval=0.5, **QUICK)


class Frozen:
    """SIGSTOP a redis-server; SIGCONT it when the block ends, whatever happened."""

    def __init__(self, server: RedisServer) -> None:
        assert server.process is not None
        self.process = server.process

    def __enter__(self) -> Frozen:
        self.process.send_signal(signal.SIGSTOP)
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.send_signal(signal.SIGCONT)


@pytest.fixture
def client(quick: Settings) -> Iterator[redis.Redis]:
    client = connect(quick)
    yield client
    client.connection_pool.disconnect()


def test_the_kernel_keeps_the_read_timeout(client: redis.Redis):
    """A connection blocks with no Python timeout, the kernel's set to the socket timeout; taking
    it from the pool again (older redis-py reads it with a timeout of its own) keeps it so."""
    for _ in range(2):
        with Line(client) as line:
            line.call(("PING",))
            sock = line._connection._sock  # type: ignore[union-attr]
            assert sock.gettimeout() is None
            raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.calcsize("ll"))
            assert struct.unpack("ll", raw) == (0, 500_000)


def test_a_read_from_a_frozen_redis_times_out_and_the_line_recovers(
    client: redis.Redis, private_redis: RedisServer
):
    """The held connection's read raises TimeoutError after the socket timeout, not never; the
    next call, once Redis answers, reconnects and works."""
    with Line(client) as line:
        line.call(("PING",))
        with Frozen(private_redis):
            started = time.monotonic()
            with pytest.raises(redis.TimeoutError, match="Timeout reading from"):
                line.call(("PING",))
            waited = time.monotonic() - started
        assert 0.4 < waited < 5
        assert line.call(("PING",)) == [b"PONG"]


class Fixed:
    """A resolver that always points at one server (a Sentinel's or Cluster's, without them)."""

    def __init__(self, server: RedisServer) -> None:
        self.port = server.port

    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    def redirected(self, exc: redis.ResponseError | None) -> None:
        pass


def test_a_frozen_master_behind_sentinel_or_cluster_times_out_too(private_redis: RedisServer):
    """Their connections read through their own read_response (redirects): a kernel timeout is
    a TimeoutError there too, not the dropped link a failover would be (which the requester
    waits out)."""
    pool = redis.ConnectionPool(
        connection_class=ResolvedConnection,
        resolver=Fixed(private_redis),
        failover_timeout=1.0,
        socket_timeout=0.5,
    )
    client = redis.Redis(connection_pool=pool)
    try:
        with Line(client) as line:
            line.call(("PING",))
            with Frozen(private_redis), pytest.raises(redis.TimeoutError):
                line.call(("BLPOP", "nothing", 0.1))
    finally:
        pool.disconnect()


def test_a_command_to_a_frozen_redis_says_it_did_not_answer(
    client: redis.Redis, private_redis: RedisServer, quick: Settings
):
    """redis-py's own command path reports the kernel's timeout as a ConnectionError: the CLI's
    message says what happened, not "Resource temporarily unavailable"."""
    client.ping()
    with Frozen(private_redis), pytest.raises(RedisUnavailable) as raised, translate_outage(quick):
        client.get("k")
    assert "it did not answer in time" in str(raised.value)
    assert "temporarily unavailable" not in str(raised.value)


def test_a_listener_answers_again_once_a_frozen_redis_thaws(
    quick: Settings, private_redis: RedisServer
):
    """Its blocked read gives up, it backs off and reconnects, and the next ping is answered."""
    with ControlListener(settings=quick.replace(process_type="worker")) as listener:
        requester = ControlClient(quick)
        assert requester.send(Command.PING, timeout=2).ok
        with Frozen(private_redis):
            wait_for(lambda: listener.outage.failures > 0, 10, "the listener's read to give up")
        # Its entry expired meanwhile: an empty ping is no answer; wait for its reply.
        wait_for(
            lambda: (
                [r.instance_id for r in requester.send(Command.PING, timeout=1).replies]
                == [listener.identity.instance_id]
            ),
            timeout=20,
            what=f"{listener.identity.label} answering after the thaw",
        )
