"""The clock-wide deploy grace: runs a deploy delayed fire once, whatever the job's own grace.

A run that fell due while the clock was drained, or between the old clock's drain and the new
clock's start, was delayed by the deploy, not by a failure: it fires once on restore if it is at
most ``deploy_grace`` seconds late (default 15 min), even when the job's own grace is shorter
(APScheduler's ``misfire_grace_time`` defaults to 1 s). A run missed for any other reason (the
clock SIGKILLed, or down for an hour) keeps the job's own policy.

The gaps are the intervals ``[drain, restore]``: a drain followed by a resume in one process, or
the old holder's drain (its time is left in Redis, ``Keys.clock_drained``, for ``deploy_grace``)
followed by the new holder's restore.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

DEFAULT_DEPLOY_GRACE = 15 * 60.0


def now_ms() -> int:
    """The wall-clock time in epoch milliseconds (how run times are named)."""
    return round(time.time() * 1000)


@dataclass(frozen=True)
class Gap:
    """A time the clock did not fire because of a drain, in epoch ms (both ends included)."""

    start_ms: int
    end_ms: int


class DeployGrace:
    """The gaps of the last ``seconds`` and whether a late run falls in one."""

    def __init__(self, seconds: float = DEFAULT_DEPLOY_GRACE) -> None:
        self.seconds = seconds
        self._gaps: list[Gap] = []
        self._drained_at: int | None = None
        self._lock = threading.Lock()

    def drained(self, at_ms: int | None = None) -> int:
        """A drain began (the first of several counts); returns its time."""
        with self._lock:
            if self._drained_at is None:
                self._drained_at = now_ms() if at_ms is None else at_ms
            return self._drained_at

    def resumed(self) -> None:
        """Firing again after our own drain: the drained time becomes a gap."""
        with self._lock:
            start, self._drained_at = self._drained_at, None
        if start is not None:
            self.add(start, now_ms())

    def add(self, start_ms: int, end_ms: int) -> None:
        """Record a gap (e.g. from the previous holder's drain to our restore)."""
        horizon = now_ms() - round(self.seconds * 1000)
        with self._lock:
            self._gaps = [gap for gap in self._gaps if gap.end_ms >= horizon]
            self._gaps.append(Gap(start_ms, end_ms))

    def covers(self, run_ms: int, at_ms: int | None = None) -> bool:
        """Whether a run due at ``run_ms`` fell in a gap and is at most ``seconds`` late."""
        late = (now_ms() if at_ms is None else at_ms) - run_ms
        if late > self.seconds * 1000:
            return False
        with self._lock:
            return any(gap.start_ms <= run_ms <= gap.end_ms for gap in self._gaps)
