"""Redis connections and the server clock.

drainctl keeps at most two connections per listener process (Heroku's smallest Redis plan allows
20 for the whole app): one blocked reading the inbox, one for heartbeats and replies.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import hiredis
import redis
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.connection import AbstractConnection, Connection
from redis.retry import Retry
from redis.typing import EncodableT

from drainctl.config import Settings, mask_url
from drainctl.errors import ConfigError
from drainctl.keys import Keys
from drainctl.redis_errors import script_errors, translate
from drainctl.sockets import KernelTimedConnection, kernel_timed_out
from drainctl.topology import parse, steer

logger = logging.getLogger(__name__)

# What a listener backs off from: outages plus any other server-side refusal (e.g. OOM, READONLY).
REDIS_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, OSError)


def connect(
    settings: Settings, *, max_connections: int = 2, name: str | None = None
) -> redis.Redis:
    """A client whose pool never opens more than ``max_connections`` sockets.

    ``name`` becomes the connections' CLIENT SETNAME, so ``CLIENT LIST`` shows who is who.

    redis-py's own retries are off: callers decide how to back off, and the CLI must fail fast.
    The read timeout leaves room for a blocking read of ``block_timeout`` seconds.

    A Sentinel or Cluster URL (see :mod:`drainctl.topology`) gives the same plain client, whose
    connections go to the current master of the service, or of the app's hash slot.
    """
    topology = parse(settings.redis_url, settings.redis_cluster)
    try:
        pool = redis.BlockingConnectionPool.from_url(
            topology.url,
            max_connections=max_connections,
            timeout=settings.block_timeout + settings.connect_timeout,
            socket_connect_timeout=settings.connect_timeout,
            socket_timeout=settings.block_timeout + settings.connect_timeout,
            socket_keepalive=True,
            health_check_interval=0,
            retry=Retry(NoBackoff(), 0),
            client_name=name,
            **tls_options(settings),
            **_driver_info(),
        )
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {mask_url(settings.redis_url)}: {exc}") from None
    if pool.connection_class is Connection:  # TLS and Unix sockets keep theirs
        pool.connection_class = KernelTimedConnection
    if topology.kind != "single":
        steer(pool, topology, Keys(settings.app or "").base, settings)
    return redis.Redis(connection_pool=pool)


def _driver_info() -> dict[str, Any]:
    """CLIENT SETINFO's library version, given: redis-py would look it up in the installed
    package's metadata for every connection (5-10 ms of a CLI command's start)."""
    try:
        from redis.driver_info import DriverInfo  # newer redis-py: lib_version is deprecated

        return {"driver_info": DriverInfo(lib_version=redis.__version__)}
    except (ImportError, TypeError):
        return {"lib_version": redis.__version__}


def tls_options(settings: Settings) -> dict[str, Any]:
    """redis-py's TLS options for a ``rediss://`` URL (the URL's own query parameters win).

    ``ssl_cert_reqs=none`` is what Heroku documents for its self-signed certificates; it is
    accepted but logged, since it leaves the connection open to a man in the middle.
    """
    try:
        parts = urlsplit(settings.redis_url)
        query = parse_qs(parts.query)
    except ValueError:
        return {}  # redis-py reports the malformed URL
    if not parts.scheme.startswith("rediss"):  # rediss, rediss+sentinel, rediss+cluster
        return {}
    options: dict[str, Any] = {}
    if settings.ssl_cert_reqs is not None and "ssl_cert_reqs" not in query:
        options["ssl_cert_reqs"] = settings.ssl_cert_reqs
    if settings.ssl_ca_certs is not None and "ssl_ca_certs" not in query:
        if not Path(settings.ssl_ca_certs).is_file():
            raise ConfigError(f"CA file {settings.ssl_ca_certs} does not exist")
        options["ssl_ca_certs"] = settings.ssl_ca_certs
    cert_reqs = options.get("ssl_cert_reqs") or query.get("ssl_cert_reqs", [""])[0]
    if cert_reqs.lower() == "none":
        logger.warning(
            "TLS certificate verification is off for %s (ssl_cert_reqs=none): "
            "pass a CA file with ssl_ca_certs to verify it",
            mask_url(settings.redis_url),
        )
    return options


@contextmanager
def translate_outage(settings: Settings) -> Iterator[None]:
    """Turn any redis-py (or socket) error into a DrainctlError naming the (masked) URL.

    Outages, out of memory and a server that does not speak Redis become RedisUnavailable
    (exit 6); a missing ACL permission or a database that does not exist, ConfigError (exit 2).
    """
    try:
        yield
    except REDIS_ERRORS as exc:
        raise translate(exc, settings.redis_url) from exc


# One command as sent to Redis: its name and arguments.
RawCommand = tuple[EncodableT, ...]


def pack(commands: tuple[RawCommand, ...] | list[RawCommand]) -> bytes:
    """``commands`` in the Redis protocol (RESP), ready to send in one write.

    What redis-py's ``pack_commands`` does for the arguments the channel sends (bytes, str, int,
    float), in a fraction of its CPU (it encodes each argument through several layers): hiredis's
    packer, in C. What it refuses (buffers, and the bool or None redis-py refuses too) takes the
    path below.
    """
    try:
        # hiredis's stub types the argument as a one-item tuple; it takes any length.
        return b"".join([hiredis.pack_command(command) for command in commands])  # type: ignore[arg-type]
    except TypeError:
        return _pack_each_argument(commands)


def _pack_each_argument(commands: tuple[RawCommand, ...] | list[RawCommand]) -> bytes:
    parts: list[bytes] = []
    for command in commands:
        parts.append(b"*%d\r\n" % len(command))
        for arg in command:
            if isinstance(arg, bytes):
                data = arg
            elif isinstance(arg, str):
                data = arg.encode()
            elif isinstance(arg, (bytearray, memoryview)):
                data = bytes(arg)
            elif isinstance(arg, (int, float)) and not isinstance(arg, bool):
                data = repr(arg).encode()
            else:  # as redis-py does: a bool or None is a bug, not a value to send
                raise redis.DataError(f"cannot send {type(arg).__name__} {arg!r} to Redis")
            parts += (b"$%d\r\n" % len(data), data, b"\r\n")
    return b"".join(parts)


class Line:
    """One of a client's pooled connections, held for a series of round trips.

    The control channel's hot paths use it: redis-py's per-command pool checkout and response
    bookkeeping cost as much CPU as a loopback round trip itself (~35 us a command here), and
    on a 2-core dyno that CPU is the latency. Responses come back as Redis sent them (no
    redis-py response callbacks). A Line belongs to one thread at a time.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.pool = client.connection_pool
        self._connection: Connection | None = None

    def call(
        self,
        *commands: RawCommand,
        raise_on_error: bool = True,
        before_last: Callable[[list[Any]], None] | None = None,
    ) -> list[Any]:
        """Send ``commands`` in one round trip; their responses, in order.

        A command Redis refuses gives its ResponseError, raised (the first one, once every
        response is read, so the connection stays usable) or, with ``raise_on_error=False``,
        returned in its place. Any other failure drops the connection; the next call reconnects.
        ``before_last`` gets the responses to every command but the last as soon as they are
        read, before the last one (a blocking pop) is waited for.
        """
        self.open()
        # Typed as Any: redis-py leaves its raw connection methods unannotated.
        connection: Any = self._connection
        responses: list[Any] = []
        try:
            connection.send_packed_command([pack(commands)], check_health=False)
            for _ in commands:
                try:
                    responses.append(_read(connection))
                except redis.ResponseError as exc:
                    responses.append(exc)
                if before_last is not None and len(responses) == len(commands) - 1:
                    before_last(responses)
        except BaseException:
            connection.disconnect()
            raise
        if raise_on_error:
            for response in responses:
                if isinstance(response, redis.ResponseError):
                    raise response
        return responses

    def open(self) -> None:
        """Take (and connect) a connection from the pool now rather than at the first call."""
        if self._connection is None:
            self._connection = self.pool.get_connection()

    def script(self, script: Script, keys: list[str], args: list[EncodableT]) -> Any:
        """Run a registered Lua script by its SHA, loading it first if the server lacks it.

        SCRIPT LOAD + EVALSHA as redis-py does (not EVAL), so the same ACL rules cover both.
        """
        evalsha = ("EVALSHA", script.sha, len(keys), *keys, *args)
        with script_errors(script):
            try:
                (result,) = self.call(evalsha)
            except redis.exceptions.NoScriptError:
                _, result = self.call(("SCRIPT", "LOAD", script.script), evalsha)
        return result

    def close(self) -> None:
        """Give the connection back to the pool."""
        if self._connection is not None:
            self.pool.release(self._connection)
            self._connection = None

    def __enter__(self) -> Line:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_STOCK_READ = AbstractConnection.read_response


def _read(connection: Any) -> Any:
    """One response, straight from the parser (a refusal comes back as a ResponseError).

    redis-py's ``read_response`` formats its error message (host and port) before every read:
    a sixth of a listener's CPU per request. Only an error pays for it here. A connection class
    with a ``read_response`` of its own (Sentinel and Cluster redirects, fakeredis) keeps it.
    A read that meets the kernel's timeout (see drainctl.sockets) is a TimeoutError either way.
    """
    try:
        if type(connection).read_response is not _STOCK_READ:
            return connection.read_response()
        return connection._parser.read_response()
    except (TimeoutError, redis.ConnectionError) as exc:
        if isinstance(exc, redis.ConnectionError) and not kernel_timed_out(exc):
            raise
        raise redis.TimeoutError(f"Timeout reading from {connection._host_error()}") from exc
    except OSError as exc:
        raise redis.ConnectionError(
            f"Error while reading from {connection._host_error()}: {exc.args}"
        ) from exc


class ServerClock:
    """Time on the Redis server's clock, from an offset measured against ``TIME``.

    Requesters and listeners run on different machines; stamping messages with Redis time keeps
    expiry decisions correct when a laptop's clock is off by minutes.
    """

    def __init__(self) -> None:
        self.offset = 0.0

    def sync(self, client: redis.Redis) -> None:
        """Measure the offset; half the round trip is attributed to each direction."""
        before = time.time()
        seconds, micros = client.time()
        after = time.time()
        self.offset = seconds + micros / 1e6 - (before + after) / 2

    def now(self) -> float:
        """Current time on the server's clock."""
        return time.time() + self.offset


class OutageLog:
    """Logs a Redis outage once when it starts and once when it ends, not once per retry."""

    def __init__(self, url: str) -> None:
        self.url = mask_url(url)
        self.failures = 0
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> int:
        """Count a failed attempt (logging the first); returns failures so far, for backoff."""
        with self._lock:
            self.failures += 1
            if self.failures == 1:
                logger.warning("lost Redis at %s (%s); retrying in the background", self.url, exc)
            return self.failures

    def recovered(self) -> bool:
        """True when this call ends an outage (the caller should then re-sync)."""
        with self._lock:
            if not self.failures:
                return False
            logger.warning("Redis at %s is back after %d failed attempts", self.url, self.failures)
            self.failures = 0
            return True
