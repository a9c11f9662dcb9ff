"""Socket timeouts kept by the kernel (drainctl.sockets), on real sockets of a socketpair."""

from __future__ import annotations

import socket
import struct
import sys
from collections.abc import Iterator

import pytest
import redis

from drainctl.sockets import kernel_timed_out, kernel_timeouts

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="kernel timeouts: Linux only")


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    yield ours, theirs
    ours.close()
    theirs.close()


def kernel_timeout(sock: socket.socket, option: int) -> tuple[int, int]:
    """The (seconds, microseconds) the kernel waits for ``option`` (SO_RCVTIMEO, SO_SNDTIMEO)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("ll"))
    seconds, micros = struct.unpack("ll", raw)
    return seconds, micros


def test_a_timeout_moves_to_the_kernel_and_still_bounds_a_read(pair):
    """The socket blocks with no Python timeout (so no poll before each call), and a read that
    gets nothing still gives up, with EAGAIN (after 50 ms here, to keep the test quick)."""
    ours, _ = pair
    ours.settimeout(1.5)
    assert kernel_timeouts(ours)
    assert ours.gettimeout() is None
    assert kernel_timeout(ours, socket.SO_RCVTIMEO) == (1, 500_000)
    assert kernel_timeout(ours, socket.SO_SNDTIMEO) == (1, 500_000)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 50_000))
    with pytest.raises(BlockingIOError):
        ours.recv(1)


def test_a_timeout_under_a_microsecond_stays_a_timeout(pair):
    """A zero timeval would be no timeout at all: the kernel gets at least 1 us."""
    ours, _ = pair
    ours.settimeout(1e-7)
    assert kernel_timeouts(ours)
    assert kernel_timeout(ours, socket.SO_RCVTIMEO) != (0, 0)
    with pytest.raises(BlockingIOError):
        ours.recv(1)


def test_a_socket_without_a_timeout_is_left_alone(pair):
    """No timeout: nothing to move, and the kernel keeps waiting for good."""
    ours, _ = pair
    assert not kernel_timeouts(ours)
    assert ours.gettimeout() is None
    assert kernel_timeout(ours, socket.SO_RCVTIMEO) == (0, 0)


class Cooperative(socket.socket):
    """Stands for a socket class of another library (gevent's): its waits are its own."""


def test_a_socket_of_another_kind_keeps_its_own_timeout():
    """Only the standard library's sockets change: another kind's timeout is all that bounds it."""
    with Cooperative() as sock:
        sock.settimeout(2.0)
        assert not kernel_timeouts(sock)
        assert sock.gettimeout() == 2.0
        assert kernel_timeout(sock, socket.SO_RCVTIMEO) == (0, 0)


def read_past_the_kernel_timeout() -> None:
    """Raise what redis-py's parser raises when a read meets the kernel's timeout."""
    try:
        raise BlockingIOError(11, "Resource temporarily unavailable")
    except BlockingIOError as exc:
        raise redis.ConnectionError(f"Error while reading from socket: {exc.args}") from None


def test_a_kernel_timeout_is_told_apart_from_a_dropped_link():
    """redis-py reports EAGAIN as a ConnectionError, as it does a closed connection."""
    with pytest.raises(redis.ConnectionError) as wrapped:
        read_past_the_kernel_timeout()
    assert kernel_timed_out(wrapped.value)
    assert not kernel_timed_out(redis.ConnectionError("Connection closed by server."))
