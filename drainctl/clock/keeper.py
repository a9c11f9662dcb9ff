"""Keeping the clock lease: a daemon thread that takes, renews and waits for it (``Lease``).

It tells its owner (``drainctl.clock.core``) when the lease changes hands, and decides when a
lease that Redis lost with its data may be taken: the previous holder at once, a standby after
one lease TTL.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from drainctl.clock.lease import Lease, LeaseStatus, Verdict
from drainctl.connection import REDIS_ERRORS

logger = logging.getLogger(__name__)


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
