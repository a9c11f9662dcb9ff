"""Redis connections and the server clock.

drainctl keeps at most two connections per listener process (Heroku's smallest Redis plan allows
20 for the whole app): one blocked reading the inbox, one for heartbeats and replies.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from drainctl.config import Settings, mask_url
from drainctl.errors import ConfigError, RedisUnavailable

# Errors that mean "Redis is not there right now"; anything else from redis-py is a bug or a
# misconfiguration and should surface as such.
OUTAGE_ERRORS: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError, OSError)
# What a listener backs off from: outages plus any other server-side refusal (e.g. OOM, READONLY).
REDIS_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, OSError)


def connect(
    settings: Settings, *, max_connections: int = 2, name: str | None = None
) -> redis.Redis:
    """A client whose pool never opens more than ``max_connections`` sockets.

    ``name`` becomes the connections' CLIENT SETNAME, so ``CLIENT LIST`` shows who is who.

    redis-py's own retries are off: callers decide how to back off, and the CLI must fail fast.
    The read timeout leaves room for a blocking read of ``block_timeout`` seconds.
    """
    try:
        pool = redis.BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=max_connections,
            timeout=settings.block_timeout + settings.connect_timeout,
            socket_connect_timeout=settings.connect_timeout,
            socket_timeout=settings.block_timeout + settings.connect_timeout,
            socket_keepalive=True,
            health_check_interval=0,
            retry=Retry(NoBackoff(), 0),
            client_name=name,
        )
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {mask_url(settings.redis_url)}: {exc}") from None
    return redis.Redis(connection_pool=pool)


@contextmanager
def translate_outage(settings: Settings) -> Iterator[None]:
    """Turn redis-py's connection errors into RedisUnavailable naming the (masked) URL."""
    url = mask_url(settings.redis_url)
    try:
        yield
    except redis.AuthenticationError as exc:  # a ConnectionError subclass: catch it first
        raise RedisUnavailable(f"Redis at {url} refused the credentials: {exc}") from exc
    except OUTAGE_ERRORS as exc:
        raise RedisUnavailable(f"cannot reach Redis at {url}: {exc}") from exc


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
