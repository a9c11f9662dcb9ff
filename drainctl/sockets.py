"""TCP connections whose read and write timeouts the kernel keeps (SO_RCVTIMEO, SO_SNDTIMEO).

A Python socket with a timeout polls before every send and every read, and lets go of the GIL
around each poll. A listener answering a request sends once and reads twice: three more system
calls, and three more hand-overs of the GIL to the process's other threads, which on a busy
dyno cost more than the round trip itself (docs/benchmarks.md). A blocking socket with the same
timeouts set in the kernel waits just as long without them. Its reads that time out fail with
EAGAIN, which redis-py reports as a ConnectionError: :func:`kernel_timed_out` tells them apart.
One difference: a signal handled while a read waits (PEP 475 retries it) starts the kernel's
wait afresh, where Python's timeout keeps one deadline.
"""

from __future__ import annotations

import socket
import struct
import sys
from typing import Any

import redis
from redis.connection import Connection


def kernel_timeouts(sock: Any) -> bool:
    """Make ``sock`` blocking, its Python timeout moved to the kernel; False when left as it is.

    Only a standard socket on Linux changes: a cooperative socket (gevent's) never blocks in the
    kernel, so only its own timeout bounds a wait; and ``struct timeval`` differs elsewhere.
    """
    timeout = sock.gettimeout()
    if not timeout or sys.platform != "linux" or type(sock).__module__ != "socket":
        return False
    seconds, fraction = divmod(timeout, 1)
    # At least 1 us: a timeval of zero is no timeout at all.
    micros = max(int(fraction * 1_000_000), 0 if seconds else 1)
    timeval = struct.pack("ll", int(seconds), micros)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
    sock.settimeout(None)
    return True


def kernel_timed_out(exc: BaseException) -> bool:
    """Whether redis-py's error ``exc`` is a read or write that met the kernel's timeout."""
    return isinstance(exc, redis.ConnectionError) and isinstance(exc.__context__, BlockingIOError)


class KernelTimedConnection(Connection):
    """redis-py's TCP connection, with its socket's timeouts kept by the kernel."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self.kernel_timeout = self.socket_timeout

    def _connect(self) -> Any:
        self.socket_timeout = self.kernel_timeout  # what redis-py sets on a new socket
        sock = super()._connect()  # type: ignore[no-untyped-call]
        if kernel_timeouts(sock):
            # What redis-py puts back after a read with a timeout of its own (older versions do
            # one for every connection taken from the pool): the socket stays blocking.
            self.socket_timeout = None
        return sock
