"""A private redis-server on a free loopback port in a temp dir, for tests, demo and bench."""

from __future__ import annotations

import itertools
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
# Under pytest-xdist each worker takes ports from its own block, below the kernel's ephemeral
# range: a port one worker picked but has not bound yet is never handed to another.
_BLOCK = 1000
_next_in_block = itertools.count(random.randrange(_BLOCK))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    if not _WORKER.startswith("gw"):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    base = 20000 + int(_WORKER[2:]) * _BLOCK
    for _ in range(_BLOCK):
        port = base + next(_next_in_block) % _BLOCK
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {base}-{base + _BLOCK - 1}")


class RedisServer:
    """Start, stop and restart a throwaway redis-server (same port across restarts)."""

    def __init__(self, port: int | None = None, *extra_args: str) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="drainctl-redis-"))
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: run scripts/test, which installs it")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                "--logfile",
                str(self.dir / "log"),
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(
                        f"redis-server did not start: see {self.dir / 'log'}"
                    ) from None
                time.sleep(0.02)
        client.close()
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
