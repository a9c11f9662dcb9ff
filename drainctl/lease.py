"""One clock per app: a lease in Redis with a monotonic fencing token, and once-keys per fire.

The lease is a hash ``{token, instance, release, rank, acquired_at}`` that expires unless its
holder renews it. Tokens come from ``INCR`` on a counter floored by the Redis server time in ms,
so each new holder gets a bigger one, even after Redis lost the counter (``lease_scripts``).
Every fire is claimed with one script that checks the caller still holds the current token and sets
a once-key per (job id, scheduled run time) with ``SET NX PX``: a clock that lost the lease learns
it at its very next fire, and even two clocks that both believe they hold it (split brain) cannot
fire the same scheduled run twice.

Who wins (decided atomically in Redis):

- a free (or expired) lease goes to whoever asks;
- a clock of a newer release takes the lease over at once; releases are ordered by their trailing
  number (Heroku's ``v42``); when either has no number, a clock of a *different* release takes
  over only when it starts (the last one deployed wins), never while polling;
- a clock that finds a newer release holding the lease is fenced: it never fires again;
- a clock of the same release stands by and takes over when the lease expires.

A SIGKILLed holder stops renewing; its key expires ``2/3 * ttl`` after its last renewal and
standbys poll every ``ttl / 6``, so another clock takes over within ``ttl`` of the kill.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, cast

import redis

from drainctl.connection import REDIS_ERRORS
from drainctl.keys import Keys
from drainctl.lease_scripts import ACQUIRE, CLAIM, RELEASE

logger = logging.getLogger(__name__)

FENCE_COUNTER_TTL = 30 * 24 * 3600
_TRAILING_NUMBER = re.compile(r"(\d+)$")


class Verdict(str, Enum):
    """Where a clock stands with respect to the lease."""

    HELD = "held"
    STANDBY = "standby"
    FENCED = "fenced"


@dataclass(frozen=True)
class LeaseStatus:
    """The outcome of an acquisition attempt: our verdict and who holds the lease now."""

    verdict: Verdict
    token: int
    holder: str
    holder_release: str
    fresh: bool = False  # free, but Redis lost its data: the previous holder gets it first


def release_rank(release: str) -> int | None:
    """The number that orders releases (``v42`` -> 42), or None when there is none."""
    match = _TRAILING_NUMBER.search(release)
    return int(match.group(1)) if match else None


class Lease:
    """The Redis side of the lease: acquire or renew, release, claim a fire."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        instance_id: str,
        release: str,
        ttl: float,
        once_ttl: float,
        schedule_ttl: float,
    ) -> None:
        self.client = client
        self.keys = keys
        self.instance_id = instance_id
        self.release = release
        self.ttl = ttl
        self.period = ttl / 6
        self._key_ms = max(1, round(ttl * 2 / 3 * 1000))
        self._once_ms = max(1, round(once_ttl * 1000))
        self._schedule_ttl = max(1, round(schedule_ttl))
        self._acquire = client.register_script(ACQUIRE)
        self._release = client.register_script(RELEASE)
        self._claim = client.register_script(CLAIM)

    def acquire(self, *, starting: bool = False, after_loss: bool = False) -> LeaseStatus:
        """Take the lease if free or ours (renewing it), or take it over if we are newer.

        After Redis lost its data the lease is free and the counter gone: only a ``starting``
        clock, or one passing ``after_loss`` (it held the lease, or waited its turn), takes it.
        """
        rank = release_rank(self.release)
        raw = self._acquire(
            keys=[self.keys.clock_lease, self.keys.clock_fence],
            args=[
                self.instance_id,
                self.release,
                "" if rank is None else str(rank),
                self._key_ms,
                FENCE_COUNTER_TTL,
                "1" if starting else "0",
                "1" if starting or after_loss else "0",
            ],
        )
        verdict, token, holder, holder_release, fresh = (_text(part) for part in raw)
        return LeaseStatus(Verdict(verdict), int(token), holder, holder_release, fresh == "fresh")

    def release_lease(self, token: int) -> bool:
        """Delete the lease if ``token`` still holds it, so a successor need not wait."""
        return bool(self._release(keys=[self.keys.clock_lease], args=[token]))

    def claim(self, token: int, job_id: str, run_ms: list[int]) -> list[int] | None:
        """The run times (ms) that may fire now; None when ``token`` no longer holds the lease."""
        keys = [self.keys.clock_lease, self.keys.clock_last]
        keys += [self.keys.clock_once(job_id, ms) for ms in run_ms]
        args: list[Any] = [token, self._once_ms, job_id, self._schedule_ttl, *run_ms]
        raw = cast(list[bytes], self._claim(keys=keys, args=args))
        if _text(raw[0]) == "lost":
            return None
        return [int(ms) for ms in raw[1:]]


class LeaseKeeper:
    """Keeps or waits for the lease in a daemon thread; tells its owner when it changes hands.

    ``on_acquired(token)`` runs each time this process becomes the holder (or is confirmed as the
    holder after a refused fire), before it may fire again; ``on_lost(verdict)`` each time it stops
    being the holder; ``on_standby()`` after each poll that finds another clock holding the
    lease (to follow what it fires). All run in this thread only, so they never race each other.
    A fenced keeper stops for good.

    After Redis lost its data, a clock that held the lease takes it again at once; a standby
    waits one lease TTL first, so a live previous holder gets it back. A standby that takes it
    then notes when it saw the loss (``taken_after_loss_at``) for ``on_acquired``.
    """

    def __init__(
        self,
        lease: Lease,
        on_acquired: Callable[[int], None],
        on_lost: Callable[[Verdict], None],
        on_standby: Callable[[], None] | None = None,
    ) -> None:
        self.lease = lease
        self.on_acquired = on_acquired
        self.on_lost = on_lost
        self.on_standby = on_standby
        self.token: int | None = None
        self._held_before = False
        self._loss_seen_at: float | None = None
        # Set when we took over a lease Redis lost with its data without having held it: the
        # wall-clock time we noticed the loss (runs before it may have fired unrecorded).
        self.taken_after_loss_at: float | None = None
        self._loss_seen_wall = 0.0
        self.verdict = Verdict.STANDBY
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._recheck = False
        self._outage = False
        self._thread = threading.Thread(target=self._run, name="drainctl-lease", daemon=True)

    def start(self) -> None:
        """Start the thread (its first attempt takes over from an older release)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; the lease itself is left as is (see ``release``)."""
        self._stop.set()
        self._wake.set()

    def release(self) -> None:
        """Give the lease up (graceful exit) so a successor need not wait; safe when not holding."""
        self.stop()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5.0)
        token, self.token = self.token, None
        if token is None:
            return
        try:
            self.lease.release_lease(token)
        except REDIS_ERRORS as exc:
            logger.warning("could not release the clock lease (it will expire): %s", exc)

    def recheck(self) -> None:
        """A fire was refused (lease lost, or Redis failed): re-check the lease at once."""
        self._recheck = True
        self._wake.set()

    def _run(self) -> None:
        starting = True
        while not self._stop.is_set():
            try:
                status = self.lease.acquire(starting=starting, after_loss=self._after_loss())
            except REDIS_ERRORS as exc:
                self._outage_failed(exc)
            else:
                starting = False
                self._outage_ended()
                if not self._safely_apply(status):
                    return
            self._wake.wait(self.lease.period)
            self._wake.clear()

    def _after_loss(self) -> bool:
        """Whether we may take a lease that Redis lost with its data (see the class docstring)."""
        seen = self._loss_seen_at
        return self._held_before or (seen is not None and time.monotonic() - seen >= self.lease.ttl)

    def _note_standby(self, status: LeaseStatus) -> None:
        if status.fresh:
            if self._loss_seen_at is None:
                logger.warning("clock lease: Redis lost its data; waiting for the last holder")
                self._loss_seen_at = time.monotonic()
                self._loss_seen_wall = time.time()
            return
        self._loss_seen_at = None
        self._held_before = False
        if self.on_standby is not None:
            self.on_standby()

    def _safely_apply(self, status: LeaseStatus) -> bool:
        """Apply a status; False once fenced. A failing callback never ends the thread."""
        try:
            self._apply(status)
        except REDIS_ERRORS as exc:
            self._outage_failed(exc)
        except Exception:
            logger.exception("clock lease callback failed; retrying")
            self._outage_failed(None)
        return status.verdict is not Verdict.FENCED

    def _apply(self, status: LeaseStatus) -> None:
        before, recheck = self.token, self._recheck
        self._recheck = False
        self.verdict = status.verdict
        if status.verdict is Verdict.HELD:
            taken_after_loss = self._loss_seen_at is not None and not self._held_before
            self.taken_after_loss_at = self._loss_seen_wall if taken_after_loss else None
            self._held_before, self._loss_seen_at = True, None
            self.token = status.token
            if status.token != before or recheck:
                logger.info("clock lease held (token %d)", status.token)
                self.on_acquired(status.token)
            return
        self.token = None
        if status.verdict is Verdict.STANDBY:
            self._note_standby(status)
        if status.verdict is Verdict.FENCED:
            logger.warning(
                "clock fenced: release %s (%s) holds the lease; this clock never fires again",
                status.holder_release,
                status.holder,
            )
        if before is not None or status.verdict is Verdict.FENCED:
            self.on_lost(status.verdict)

    def _outage_failed(self, exc: BaseException | None) -> None:
        if exc is not None and not self._outage:
            self._outage = True
            logger.warning("clock lease: Redis unreachable (%s); not firing until it is back", exc)
        # Without Redis no fire can be claimed anyway; when it is back, restore before firing.
        if self.token is not None:
            self.token = None
            self.on_lost(Verdict.STANDBY)

    def _outage_ended(self) -> None:
        if self._outage:
            self._outage = False
            logger.warning("clock lease: Redis is back")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
