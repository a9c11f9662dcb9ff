"""connection.pack: the control channel's own RESP packer, byte for byte redis-py's."""

from __future__ import annotations

import pytest
import redis
from redis.connection import Connection

from drainctl.connection import RawCommand, pack

COMMANDS: list[list[RawCommand]] = [
    [("PING",)],
    [("RPUSH", "drainctl:{app}:reply:1", b'{"v":1}\x00\xff'), ("PEXPIRE", "k", 5000)],
    [("BLPOP", "drainctl:{app}:inbox:\u00e9", 30.0), ("BLMPOP", 2.5, 1, "k", "LEFT", "COUNT", 4)],
    [("EVALSHA", "0" * 40, 1, "k", b"x", -1, 1e308)],
]


@pytest.mark.parametrize("commands", COMMANDS)
def test_packs_as_redis_py_does(commands: list[RawCommand]) -> None:
    """Every argument type the channel sends encodes exactly as redis-py would send it."""
    assert pack(commands) == b"".join(Connection().pack_commands(commands))


def test_packs_buffers_as_their_bytes() -> None:
    """bytearray and memoryview go as their bytes (redis-py before 6 refuses them)."""
    assert pack([("SET", bytearray(b"x"), memoryview(b"yz"))]) == pack([("SET", b"x", b"yz")])


@pytest.mark.parametrize("value", [True, None])
def test_refuses_what_redis_py_refuses(value: object) -> None:
    """A bool or None is a bug in the caller, never sent as something else."""
    with pytest.raises(redis.DataError):
        pack([("SET", "k", value)])  # type: ignore[list-item]
