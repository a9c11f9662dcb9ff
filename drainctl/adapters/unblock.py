"""Blocking Redis pops that a drain cuts short at once, with ``CLIENT UNBLOCK``.

A worker waits for its next job in ``BLPOP``/``BLMOVE`` with a timeout of seconds to minutes. A
drain that only flips a flag is noticed when that wait ends, and a job pushed meanwhile is still
taken. Here the blocking pop runs on a dedicated connection whose client id we know; a drain
closes the gate, then asks Redis to unblock that client, so the pop returns nil at once and no
job is taken after the drain was received. The gate is checked under a lock before each pop, so
a drain that lands between "may I?" and "pop" is never missed: the interrupter retries until the
pop is either unblocked or over.

Costs two extra connections per worker (the pop and the unblocker) and needs the ``CLIENT ID``
and ``CLIENT UNBLOCK`` commands (Redis >= 5; not renamed or denied by ACLs).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from drainctl.errors import DrainctlError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Between setting "about to block" and the command reaching Redis there is a short window in
# which there is nothing to unblock yet; retry this often until the pop is blocked or done.
_RETRY_EVERY = 0.001


class Interrupted(DrainctlError):
    """A blocking pop was refused or cut short because the gate closed."""


# A blocked pop must not hit the socket's read timeout first.
_READ_MARGIN = 5.0


def dedicated_client(source: redis.Redis, max_block: float | None = None) -> redis.Redis:
    """A one-connection client to the same server, with the same options, and no retries.

    With ``max_block``, its read timeout leaves room for pops blocking that long.
    """
    pool = source.connection_pool
    kwargs: dict[str, Any] = {**pool.connection_kwargs, "retry": Retry(NoBackoff(), 0)}
    if max_block is not None:
        kwargs["socket_timeout"] = max_block + _READ_MARGIN
    return redis.Redis(
        connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class, max_connections=1, **kwargs
        )
    )


class InterruptiblePop:
    """Runs blocking pops while ``gate()`` is true; ``interrupt()`` ends one in flight at once.

    ``max_block``: the longest a pop may block, in seconds (else the source's read timeout
    must already allow for it, as RQ arranges for its workers).
    """

    def __init__(
        self, source: redis.Redis, gate: Callable[[], bool], *, max_block: float | None = None
    ) -> None:
        self.client = dedicated_client(source, max_block)
        self._control = dedicated_client(source)
        self._gate = gate
        self._lock = threading.Lock()
        self._client_id: int | None = None
        self._blocked: int | None = None

    def call(self, pop: Callable[[redis.Redis], T]) -> T:
        """Run ``pop`` on the dedicated client; raise Interrupted if the gate is or gets closed."""
        if self._client_id is None:
            self._client_id = int(self.client.client_id())
        with self._lock:
            if not self._gate():
                raise Interrupted("the gate is closed")
            self._blocked = self._client_id
        try:
            result = pop(self.client)
        except BaseException:
            # The connection may be new next time, with a new id.
            self._client_id = None
            raise
        finally:
            with self._lock:
                self._blocked = None
        if result is None and not self._gate():
            raise Interrupted("a drain cut the pop short")
        return result

    def interrupt(self, timeout: float = 2.0) -> bool:
        """Unblock the pop in flight, if any; call after closing the gate. True if it ended."""
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            with self._lock:
                blocked = self._blocked
            if blocked is None:
                return True
            try:
                if self._control.client_unblock(blocked):
                    return True
            except redis.RedisError as exc:
                logger.warning("could not interrupt the blocking pop: %s", exc)
                return False
            time.sleep(_RETRY_EVERY)
        return False

    def close(self) -> None:
        """Close both connections (the next ``call`` opens a new one, with a new id)."""
        self._client_id = None
        for client in (self.client, self._control):
            client.close()
            client.connection_pool.disconnect()
