"""Redis errors that are not outages, from real servers configured that way: one line, an exit
code, no traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator

import pytest
import redis

from drainctl.config import Settings
from drainctl.listener import ControlListener
from tests.redis_server import RedisServer


def drainctl(url: str, app: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "drainctl", "--redis-url", url, "--app", app, *args],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


def assert_one_line(done: subprocess.CompletedProcess[str], code: int, *parts: str) -> None:
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    for part in parts:
        assert part in last, last


def fill(client: redis.Redis) -> None:
    """Write until Redis refuses (maxmemory with noeviction)."""
    for i in range(100_000):
        client.set(f"ballast:{i}", b"x" * 1000)


@pytest.fixture
def full_redis(app: str) -> Iterator[RedisServer]:
    """A private server with maxmemory and noeviction, a listener registered, then filled up."""
    server = RedisServer(None, "--maxmemory", "4mb", "--maxmemory-policy", "noeviction").start()
    settings = Settings(redis_url=server.url, app=app, process_type="worker")
    # A long interval: its entry must outlive the test, since no heartbeat can be written now.
    listener = ControlListener(settings=settings.replace(heartbeat_interval=60)).start()
    admin = redis.Redis(port=server.port)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        fill(admin)
    try:
        yield server
    finally:
        admin.flushall()  # a private server: room again, so the listener can stop at once
        admin.close()
        listener.stop()
        server.cleanup()


def test_out_of_memory_exits_6_naming_maxmemory(full_redis: RedisServer, app: str) -> None:
    """maxmemory reached with noeviction: a command that writes exits 6 and says why."""
    done = drainctl(full_redis.url, app, "ping", "--timeout", "1")
    assert_one_line(done, 6, "out of memory", "maxmemory", "noeviction")


@pytest.mark.parametrize("command", [["status"], ["ping"]])
def test_missing_acl_permission_exits_2_naming_the_command(
    redis_server: RedisServer, restricted_user: str, app: str, command: list[str]
) -> None:
    """NOPERM (here for ZRANGE, refused inside drainctl's registry script): exit 2, named."""
    url = f"redis://{restricted_user}:pw@127.0.0.1:{redis_server.port}/0"
    done = drainctl(url, app, *command)
    assert_one_line(done, 2, "may not use the ZRANGE command", "ACL SETUSER")


def test_missing_acl_permission_outside_a_script(redis_server: RedisServer, app: str) -> None:
    """A user without EVALSHA is refused the script itself: the message names EVALSHA."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    admin = redis.Redis.from_url(redis_server.url)
    admin.execute_command(f"ACL SETUSER {name} on >pw resetkeys ~drainctl:* -@all +time")
    try:
        url = f"redis://{name}:pw@127.0.0.1:{redis_server.port}/0"
        assert_one_line(drainctl(url, app, "status"), 2, "may not use the EVALSHA command")
    finally:
        admin.execute_command(f"ACL DELUSER {name}")
        admin.close()


def test_bad_database_index_exits_2(redis_server: RedisServer, app: str) -> None:
    """A URL naming a database the server does not have: exit 2, no such database."""
    url = f"redis://127.0.0.1:{redis_server.port}/99"
    assert_one_line(drainctl(url, app, "status"), 2, "no such database", "/99")


@pytest.fixture
def http_port() -> Iterator[int]:
    """A plain TCP server that answers anything with an HTTP error, as a web server would."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.05)  # accept() wakes up to see the stop flag
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stopping.set()
    thread.join(5)
    server.close()


@pytest.mark.parametrize("command", [["status"], ["ping"], ["--json", "status"]])
def test_a_port_that_is_not_redis_exits_6(http_port: int, app: str, command: list[str]) -> None:
    """A URL pointing at a web server: exit 6, "not speaking Redis"."""
    done = drainctl(f"redis://127.0.0.1:{http_port}/0", app, *command)
    assert_one_line(done, 6, "is not speaking Redis")
    assert done.stdout == ""  # nothing half-written on stdout either


def test_no_sentinel_answering_is_one_short_line(app: str) -> None:
    """Sentinels that do not answer: exit 6, one line naming the service, not redis-py's repr of
    every client it tried."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = drainctl(f"redis+sentinel://127.0.0.1:{port}/mymaster", app, "status")
    assert_one_line(done, 6, "No master found for 'mymaster' (no sentinel answered")
    assert len(done.stderr.strip()) < 300
