"""A consumer's liveness key, kept by a small helper process that beats while its parent lives.

The ControlListener's heartbeat is a thread of the worker: a job that holds the GIL, a SIGSTOP,
or a long C call silences it, and the worker looks dead while it is still running its job. The
helper is a separate process, so none of that stops it. It sets ``key`` to a random token with a
TTL of ``ttl`` seconds every ``ttl / 6`` seconds for as long as its parent runs (a stopped
parent still runs), and deletes the key the moment its parent exits: its stdin, a pipe from the
parent, reaches end of file (checked by ``os.getppid()`` too, in case a fork of the parent holds
the pipe open). So the key is absent only when the owner has exited or has been unreachable from
Redis, with its helper, for ``ttl`` seconds.

The helper ignores SIGTERM and SIGINT (a platform signals every process of a dyno): it stays as
long as its parent does, so a draining worker keeps its jobs.

    python -m drainctl.adapters.liveness   # reads one JSON line of configuration on stdin
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import redis

logger = logging.getLogger(__name__)

# Compare-and-delete: a helper removes only the key it set (never a successor's).
RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end"
# The shortest beat interval.
TICK = 0.1
BEATS_PER_TTL = 6
# Connection settings that cannot cross a process boundary (objects, callables) are dropped.
PORTABLE = (str, int, float, bool, type(None))


def connection_config(client: redis.Redis) -> dict[str, Any]:
    """The parts of a client's connection settings the helper can use to connect the same way."""
    pool = client.connection_pool
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if isinstance(v, PORTABLE)}
    kinds = {redis.SSLConnection: "ssl", redis.UnixDomainSocketConnection: "unix"}
    return {"kind": kinds.get(pool.connection_class, "tcp"), "kwargs": kwargs}


def connect(config: dict[str, Any], timeout: float) -> redis.Redis:
    """A client from ``connection_config`` output, with timeouts short enough to keep beating."""
    classes = {"ssl": redis.SSLConnection, "unix": redis.UnixDomainSocketConnection}
    kwargs = {**config["kwargs"], "socket_timeout": timeout, "socket_connect_timeout": timeout}
    connection_class = classes.get(config["kind"], redis.Connection)
    pool = redis.ConnectionPool(connection_class=connection_class, **kwargs)
    return redis.Redis(connection_pool=pool)


class LivenessHelper:
    """The parent's handle on its helper process: start it, and stop it (which deletes the key)."""

    def __init__(self, client: redis.Redis, key: str, ttl: float) -> None:
        self.client = client
        self.key = key
        self.ttl = ttl
        self.token = secrets.token_hex(8)
        self.process: subprocess.Popen[bytes] | None = None

    def ensure_running(self) -> None:
        """Start the helper, or restart it if it died; also beat once from here (no gap)."""
        self.client.set(self.key, self.token, px=int(self.ttl * 1000))
        if self.process is not None and self.process.poll() is None:
            return
        config = {
            "parent": os.getpid(),
            "key": self.key,
            "token": self.token,
            "ttl": self.ttl,
            "redis": connection_config(self.client),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__], stdin=subprocess.PIPE, close_fds=True, env=_env()
        )
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(config).encode() + b"\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        """End the helper: it deletes the key and exits."""
        if self.process is None:
            return
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            self.client.eval(RELEASE, 1, self.key, self.token)
        self.process = None


def _env() -> dict[str, str] | None:
    # The helper imports drainctl from wherever this process did: a source tree or a vendored
    # copy next to the app's script is on our sys.path, not on a fresh interpreter's. An
    # installed drainctl is found anyway (and site-packages must not go before the stdlib).
    root = str(Path(__file__).resolve().parents[2])
    if Path(root).name in ("site-packages", "dist-packages"):
        return None
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root if not path else f"{root}{os.pathsep}{path}"}


class Beater:
    """The helper's side: beat until the parent goes, then delete the key."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.parent = int(config["parent"])
        self.key = str(config["key"])
        self.token = str(config["token"])
        self.ttl_ms = int(float(config["ttl"]) * 1000)
        self.every = max(float(config["ttl"]) / BEATS_PER_TTL, TICK)
        self.client = connect(config["redis"], timeout=max(self.every, 0.5))
        self.parent_gone = threading.Event()
        self.failing = False

    def watch_stdin(self) -> None:
        """Block on the pipe from the parent: end of file means it closed us or exited."""
        sys.stdin.buffer.read()
        self.parent_gone.set()

    def run(self) -> None:
        """Beat every ``ttl / 6`` seconds while the parent lives; release the key after."""
        threading.Thread(target=self.watch_stdin, daemon=True).start()
        while os.getppid() == self.parent:
            self.beat()
            if self.parent_gone.wait(self.every):
                break
        self.call(lambda: self.client.eval(RELEASE, 1, self.key, self.token))

    def beat(self) -> None:
        """Refresh the key (a Redis outage is retried at the next beat)."""
        self.call(lambda: self.client.set(self.key, self.token, px=self.ttl_ms))

    def call(self, command: Any) -> None:
        # An outage is logged once, not once per beat; the helper keeps trying until it returns.
        try:
            command()
        except redis.RedisError as exc:
            if not self.failing:
                logger.warning("liveness key %s: Redis unavailable (%s)", self.key, exc)
            self.failing = True
        else:
            self.failing = False


def main() -> int:
    """Read the configuration line from stdin, then beat until the parent exits."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    line = sys.stdin.buffer.readline()
    if not line:
        return 0
    Beater(json.loads(line)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
