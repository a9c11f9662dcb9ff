"""A reliable Redis list queue for hand-written workers: nothing is lost, even to SIGKILL.

The classic pattern (Redis docs, ``LMOVE``): a consumer moves each payload atomically from the
queue into its own *processing* list, and removes it from there only once the job is done
(``ack``). A payload popped just as a drain began goes back to the front (``hand_back``). When a
worker dies without cleaning up (SIGKILL, out of memory, a lost dyno), its processing list keeps
the payload; ``recover`` moves it back to the queue once the owner is known to be gone.

**What is guaranteed.** A payload sits in exactly one place at a time (the queue or one
consumer's processing list): every move is one atomic command or script. Membership of the
owner's processing list is the job's claim: ``ack`` and ``hand_back`` remove the payload from
there and succeed only if it is still there, and ``recover`` empties a list only in a script that
first checks the owner's liveness key. So exactly one of them wins, and ``ack`` returns whether
this worker still owned the job; a worker that lost it logs a warning, calls ``on_lost`` (the
demo worker counts it as ``jobs_lost`` in ``drainctl status``) and must treat its run as a
duplicate. Recovery needs both:

- the owner's drainctl heartbeat expired (so a consumer of an older drainctl, which has no
  liveness key, is judged as before), and
- its liveness key ``{queue}:alive:{consumer}`` absent. A helper *process*
  (``drainctl.adapters.liveness``) refreshes it while the worker process exists, whatever the
  worker does: a job holding the GIL, a SIGSTOP, a long C call do not stop it. It deletes the
  key as soon as the worker exits, so a SIGKILLed worker's jobs are recovered once its heartbeat
  expires (three beats), as before; if the whole host dies with it, the key expires after
  ``recover_after`` seconds (30 by default).

So a job is run again only if its worker exited first, or if the worker and its helper were cut
off from Redis for longer than ``recover_after`` (a network partition, a Redis failover that
lost the key). In that last case both may run it: the old owner learns it from ``ack`` (False)
only *after* its run. Jobs with effects outside Redis that must not happen twice need an
idempotency key of their own (the job id in a unique constraint, or a SET NX before the effect);
choose ``recover_after`` longer than any outage you want to ride out. A stopped (SIGSTOP) worker
keeps its jobs until it is resumed or killed.

Keys (the queue is yours; these sit next to it):

- ``{queue}``: the list producers ``RPUSH`` to; consumers take from the left.
- ``{queue}:processing:{consumer}``: payloads one consumer is working on (Redis deletes a list
  when it empties).
- ``{queue}:consumers``: the set of consumers that may own a processing list; a consumer leaves it
  on ``close`` and a dead one is removed by whoever recovers its jobs.
- ``{queue}:alive:{consumer}``: the liveness key, expiring after ``recover_after``, deleted when
  the worker exits.

Pops go through ``InterruptiblePop``, so a drain ends a blocking pop at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import cast

import redis

from drainctl.adapters.liveness import LivenessHelper
from drainctl.adapters.unblock import Interrupted, InterruptiblePop
from drainctl.keys import Keys

logger = logging.getLogger(__name__)

# The default grace before the jobs of a worker that stopped beating (with its helper) may be
# taken: long enough to ride out a Redis restart or a short network partition.
RECOVER_AFTER = 30.0

# Hand back only what we still own: an LPUSH after an LREM that found nothing would duplicate.
HAND_BACK = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0
"""

# Take a consumer's payloads only while its liveness key is absent, in the same atomic step.
RECOVER = """
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local moved = 0
while redis.call('LMOVE', KEYS[2], KEYS[3], 'RIGHT', 'LEFT') do moved = moved + 1 end
redis.call('SREM', KEYS[4], ARGV[1])
return moved
"""

# A pop whose reply was lost may have moved a payload into our list anyway (at the right end):
# put what exceeds the payloads we know we hold back at the front of the queue.
RETURN_ORPHANS = """
local moved = 0
while redis.call('LLEN', KEYS[1]) > tonumber(ARGV[1]) do
  redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  moved = moved + 1
end
return moved
"""
# The pause after a failed pop, so a loop meeting an outage does not spin.
OUTAGE_PAUSE = 0.5


class ReliableQueue:
    """One consumer's view of a Redis list queue with a processing list and crash recovery.

    ``recover_after``: seconds without a liveness beat before a worker's jobs may be recovered
    (see the module docstring). ``on_lost(payload)`` is called when ``ack`` finds the job was
    recovered from us meanwhile. ``liveness=False`` skips the helper process (the queue then
    only produces or recovers; a consumer without it is judged by its heartbeat alone).
    """

    def __init__(
        self,
        client: redis.Redis,
        name: str,
        *,
        app: str,
        consumer: str,
        gate: Callable[[], bool] = lambda: True,
        max_pop_timeout: float = 30.0,
        recover_after: float = RECOVER_AFTER,
        on_lost: Callable[[bytes], None] | None = None,
        liveness: bool = True,
    ) -> None:
        self.client = client
        self.name = name
        self.consumer = consumer
        self.keys = Keys(app)
        self.consumers_key = f"{name}:consumers"
        self.processing = self.processing_key(consumer)
        self.max_pop_timeout = max_pop_timeout
        self.pops = InterruptiblePop(client, gate, max_block=max_pop_timeout)
        self.on_lost = on_lost
        self.lost = 0
        self.recover_after = recover_after
        self.held = 0  # payloads popped and not yet acknowledged or handed back
        self.orphans_possible = False
        self.outage = False
        self.helper = (
            LivenessHelper(client, self.alive_key(consumer), recover_after) if liveness else None
        )

    def processing_key(self, consumer: str) -> str:
        """The processing list of one consumer."""
        return f"{self.name}:processing:{consumer}"

    def alive_key(self, consumer: str) -> str:
        """The liveness key of one consumer."""
        return f"{self.name}:alive:{consumer}"

    def push(self, *payloads: str | bytes) -> None:
        """Append payloads at the back of the queue (what a producer does)."""
        self.client.rpush(self.name, *payloads)

    def pop(self, timeout: float) -> bytes | None:
        """Move the next payload into our processing list; None on timeout, when drained, or
        when Redis is unavailable (logged once; the next pop tries again)."""
        timeout = min(timeout, self.max_pop_timeout)
        try:
            self._prepare_pop()
            payload = cast(
                "bytes | None",
                self.pops.call(
                    lambda c: c.blmove(self.name, self.processing, timeout, "LEFT", "RIGHT")  # type: ignore[arg-type]  # Redis >= 6 takes float seconds
                ),
            )
        except Interrupted:
            return None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self.orphans_possible = True
            self._log_outage(exc)
            time.sleep(min(timeout, OUTAGE_PAUSE))
            return None
        self.outage = False
        self.held += payload is not None
        return payload

    def _prepare_pop(self) -> None:
        if self.helper is not None:
            self.helper.ensure_running()
        self.client.sadd(self.consumers_key, self.consumer)
        if self.orphans_possible:
            moved = self.client.eval(RETURN_ORPHANS, 2, self.processing, self.name, self.held)
            if moved:
                logger.warning("put back %s payload(s) popped while the link was down", moved)
            self.orphans_possible = False

    def _log_outage(self, exc: Exception) -> None:
        if not self.outage:
            logger.warning("queue %s: Redis unavailable (%s); retrying", self.name, exc)
        self.outage = True

    def interrupt(self) -> None:
        """End a blocking pop in flight at once (call after closing the gate)."""
        self.pops.interrupt()

    def ack(self, payload: bytes) -> bool:
        """The job is done (succeeded or failed for good): forget it.

        Returns whether we still owned it; False means it was recovered from us (we were cut
        off for longer than ``recover_after``) and another worker may run it too. Retries
        through a Redis outage for up to ``recover_after``: until then nobody else takes it.
        """
        owned = bool(self._retrying(lambda: self.client.lrem(self.processing, 1, payload)))  # type: ignore[arg-type]  # bytes work
        return self._settled(payload, owned)

    def hand_back(self, payload: bytes) -> bool:
        """Put a payload we will not run back at the front of the queue, atomically.

        Returns whether we still owned it (if not, it was recovered already: nothing to do).
        """
        owned = bool(
            self._retrying(
                lambda: self.client.eval(HAND_BACK, 2, self.processing, self.name, payload)
            )
        )
        return self._settled(payload, owned)

    def _retrying(self, command: Callable[[], object]) -> object:
        give_up = time.monotonic() + self.recover_after
        while True:
            try:
                return command()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if time.monotonic() > give_up:
                    raise
                self._log_outage(exc)
                time.sleep(OUTAGE_PAUSE)

    def _settled(self, payload: bytes, owned: bool) -> bool:
        self.held = max(0, self.held - 1)
        if not owned:
            self._lost(payload)
        return owned

    def _lost(self, payload: bytes) -> None:
        self.lost += 1
        logger.warning(
            "job %r of %s was recovered from this worker while it ran (cut off from Redis "
            "longer than recover_after?): another worker may run it too",
            payload[:200],
            self.name,
        )
        if self.on_lost is not None:
            try:
                self.on_lost(payload)
            except Exception:
                logger.exception("on_lost hook failed")

    def recover(self) -> int:
        """Move gone consumers' payloads back to the front of the queue; returns how many.

        Returns 0 while Redis is unavailable (logged once)."""
        try:
            return self._recover()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._log_outage(exc)
            return 0

    def _recover(self) -> int:
        members = cast(set[bytes], self.client.smembers(self.consumers_key))
        moved = 0
        for raw in members:
            consumer = raw.decode()
            if consumer == self.consumer or self.client.exists(self.keys.instance(consumer)):
                continue
            keys = (
                self.alive_key(consumer),
                self.processing_key(consumer),
                self.name,
                self.consumers_key,
            )
            moved += max(0, int(cast(int, self.client.eval(RECOVER, 4, *keys, consumer))))
        if moved:
            logger.warning("recovered %d job(s) from gone workers of %s", moved, self.name)
        return moved

    def close(self) -> None:
        """Leave the consumer set (when our processing list is empty), stop the liveness
        helper and close connections."""
        if not self.client.llen(self.processing):
            self.client.srem(self.consumers_key, self.consumer)
        if self.helper is not None:
            self.helper.stop()
        self.pops.close()
