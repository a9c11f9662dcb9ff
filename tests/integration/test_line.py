"""Line: a held connection that sends commands in batches (real redis-server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from drainctl.config import Settings
from drainctl.connection import Line, connect


@pytest.fixture
def client(settings: Settings) -> Iterator[redis.Redis]:
    client = connect(settings, max_connections=1)
    yield client
    client.connection_pool.disconnect()


def test_commands_go_in_one_round_trip_and_answer_in_order(client: redis.Redis, app: str):
    """Responses come back in the order sent, as Redis sent them."""
    key = f"drainctl:{{{app}}}:line"
    with Line(client) as line:
        pushed, expired, popped = line.call(
            ("RPUSH", key, "a", "b"), ("PEXPIRE", key, 10_000), ("LPOP", key, 2)
        )
    assert (pushed, expired, popped) == (2, 1, [b"a", b"b"])


def test_a_refused_command_raises_and_the_line_stays_usable(client: redis.Redis, app: str):
    """The error is raised once every response is read; the same connection then goes on."""
    key = f"drainctl:{{{app}}}:line-string"
    client.set(key, "x", px=10_000)
    with Line(client) as line:
        (before,) = line.call(("CLIENT", "ID"))
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            line.call(("RPUSH", key, "a"), ("GET", key))
        assert line.call(("GET", key), ("CLIENT", "ID")) == [b"x", before]


def test_errors_can_come_back_in_place(client: redis.Redis, app: str):
    """With raise_on_error=False a refusal is returned where its response would be."""
    key = f"drainctl:{{{app}}}:line-string"
    client.set(key, "x", px=10_000)
    with Line(client) as line:
        refused, value = line.call(("RPUSH", key, "a"), ("GET", key), raise_on_error=False)
    assert isinstance(refused, redis.ResponseError)
    assert value == b"x"


def test_a_killed_connection_fails_one_call_and_the_next_reconnects(
    client: redis.Redis, redis_client: redis.Redis
):
    """Losing the socket raises ConnectionError once; the next call opens a new connection."""
    with Line(client) as line:
        (first,) = line.call(("CLIENT", "ID"))
        redis_client.client_kill_filter(_id=first)
        with pytest.raises(redis.ConnectionError):
            line.call(("PING",))
        (second,) = line.call(("CLIENT", "ID"))
    assert second != first


def test_scripts_load_themselves_when_the_server_lost_them(
    client: redis.Redis, redis_client: redis.Redis
):
    """EVALSHA first; after SCRIPT FLUSH the script is loaded again and runs all the same."""
    script = client.register_script("return ARGV[1] .. KEYS[1]")
    with Line(client) as line:
        assert line.script(script, ["k"], ["v"]) == b"vk"
        redis_client.script_flush()
        assert line.script(script, ["k"], ["w"]) == b"wk"


def test_closing_gives_the_connection_back(client: redis.Redis):
    """With a pool of one, a second Line gets the connection once the first closes."""
    with Line(client) as line:
        (held,) = line.call(("CLIENT", "ID"))
    with Line(client) as line:
        assert line.call(("CLIENT", "ID")) == [held]
