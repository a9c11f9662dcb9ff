"""A reliable Redis list queue for hand-written workers: nothing is lost, even to SIGKILL.

The classic pattern (Redis docs, ``LMOVE``): a consumer moves each payload atomically from the
queue into its own *processing* list, and removes it from there only once the job is done
(``ack``). A payload popped just as a drain began goes back to the front (``hand_back``). When a
worker dies without cleaning up (SIGKILL, out of memory, a lost dyno), its processing list keeps
the payload; ``recover`` moves it back to the queue once the owner is known to be dead.

A consumer is dead when its drainctl heartbeat has expired: the ControlListener refreshes it from
its own thread, so a long job never looks dead. Keys (the queue is yours; these sit next to it):

- ``{queue}``: the list producers ``RPUSH`` to; consumers take from the left.
- ``{queue}:processing:{consumer}``: payloads one consumer is working on (Redis deletes a list
  when it empties).
- ``{queue}:consumers``: the set of consumers that may own a processing list; a consumer leaves it
  on ``close`` and a dead one is removed by whoever recovers its jobs.

Pops go through ``InterruptiblePop``, so a drain ends a blocking pop at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import cast

import redis

from drainctl.adapters.unblock import Interrupted, InterruptiblePop
from drainctl.keys import Keys

logger = logging.getLogger(__name__)


class ReliableQueue:
    """One consumer's view of a Redis list queue with a processing list and crash recovery."""

    def __init__(
        self,
        client: redis.Redis,
        name: str,
        *,
        app: str,
        consumer: str,
        gate: Callable[[], bool] = lambda: True,
        max_pop_timeout: float = 30.0,
    ) -> None:
        self.client = client
        self.name = name
        self.consumer = consumer
        self.keys = Keys(app)
        self.consumers_key = f"{name}:consumers"
        self.processing = self.processing_key(consumer)
        self.max_pop_timeout = max_pop_timeout
        self.pops = InterruptiblePop(client, gate, max_block=max_pop_timeout)

    def processing_key(self, consumer: str) -> str:
        """The processing list of one consumer."""
        return f"{self.name}:processing:{consumer}"

    def push(self, *payloads: str | bytes) -> None:
        """Append payloads at the back of the queue (what a producer does)."""
        self.client.rpush(self.name, *payloads)

    def pop(self, timeout: float) -> bytes | None:
        """Move the next payload into our processing list; None on timeout or when drained."""
        timeout = min(timeout, self.max_pop_timeout)
        self.client.sadd(self.consumers_key, self.consumer)
        try:
            return cast(
                "bytes | None",
                self.pops.call(
                    lambda c: c.blmove(self.name, self.processing, timeout, "LEFT", "RIGHT")  # type: ignore[arg-type]  # Redis >= 6 takes float seconds
                ),
            )
        except Interrupted:
            return None

    def interrupt(self) -> None:
        """End a blocking pop in flight at once (call after closing the gate)."""
        self.pops.interrupt()

    def ack(self, payload: bytes) -> None:
        """The job is done (succeeded or failed for good): forget it."""
        self.client.lrem(self.processing, 1, payload)  # type: ignore[arg-type]  # bytes work

    def hand_back(self, payload: bytes) -> None:
        """Put a payload we will not run back at the front of the queue, atomically."""
        pipe = self.client.pipeline(transaction=True)
        pipe.lrem(self.processing, 1, payload)  # type: ignore[arg-type]  # bytes work
        pipe.lpush(self.name, payload)
        pipe.execute()

    def recover(self) -> int:
        """Move dead consumers' payloads back to the front of the queue; returns how many."""
        members = cast(set[bytes], self.client.smembers(self.consumers_key))
        moved = 0
        for raw in members:
            consumer = raw.decode()
            if consumer == self.consumer or self.client.exists(self.keys.instance(consumer)):
                continue
            source = self.processing_key(consumer)
            # LMOVE is atomic per payload, so two recovering workers never both take one.
            while self.client.lmove(source, self.name, "RIGHT", "LEFT") is not None:
                moved += 1
            self.client.srem(self.consumers_key, consumer)
        if moved:
            logger.warning("recovered %d job(s) from dead workers of %s", moved, self.name)
        return moved

    def close(self) -> None:
        """Leave the consumer set (when our processing list is empty) and close connections."""
        if not self.client.llen(self.processing):
            self.client.srem(self.consumers_key, self.consumer)
        self.pops.close()
