"""One ordered path for every change of what an instance should be doing.

A listener's adapter is told to drain and to resume from several threads: requests (the serve
thread), fences found when re-registering or expiring (the beat thread), SIGTERM (its own
thread), a clock's lost lease (the lease keeper). :class:`Lifecycle` puts them in one order.

Events (each bumps the generation number ``gen`` under ``_cond``):

=================  ==========================================  ===================================
event              from                                        what the instance should do then
=================  ==========================================  ===================================
drain              request (serve), host code, recycling       drained, once the drain starts
resume             request (serve), host code                  running, unless something below
fence observed     drain request's args (serve), registration  drained, with the fence's deadline
                   read (beat)
fence lifted       resume request once the key is gone         running
                   (serve); signed expiry confirmed at the
                   source (beat)
terminate          SIGTERM (signal thread)                     drained for good
lease lost         a clock's lease keeper                      fenced for good (never fires again)
=================  ==========================================  ===================================

Rules that follow from the order:

- drains run one at a time on the ``drain`` thread, in the order they arrived; a queued drain
  that a later resume superseded, or whose request expired while it waited, never runs (a final
  drain, SIGTERM's, runs at once on its caller's thread: its deadline is the platform's grace);
  a drain with none queued before it, of an adapter with nothing in flight
  (``drain_if_idle``, which never waits), is over at once and runs on its caller's thread too:
  handing it to the drain thread and back cost more than the drain (two thread wake-ups, on a
  fleet that answers a deploy's drain all at once);
- ``adapter.drain`` and ``adapter.resume`` are never called under ``_cond``; decisions to call
  them are taken under ``_drive``, so a resume decided before a drain reaches the adapter first;
  a resume that lands while a drain is entering the adapter is repeated until the drain returns,
  and every drain that returns reconciles the adapter with the newest wanted state;
- the reported :class:`State` is derived from the wanted state, the drains inside the adapter and
  the adapter's own ``accepting`` flag (where it has one), so ``status`` never says ``running``
  while the adapter takes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import cast

from drainctl.adapters.base import Adapter, DrainReport
from drainctl.errors import DrainctlError
from drainctl.protocol import State

logger = logging.getLogger(__name__)

# How long a resume that raced a drain entering the adapter keeps repeating itself.
NUDGE_FOR = 1.0
NUDGE_EVERY = 0.02


class Superseded(DrainctlError):
    """A queued drain that a later resume made pointless before it began."""


class Expired(DrainctlError):
    """A queued drain whose request expired while it waited: the requester gave up on it."""


@dataclass(frozen=True)
class DrainOrder:
    """One drain, numbered by the generation it arrived in."""

    ticket: int
    deadline: float
    expires_at: float | None = None


class Lifecycle:
    """Wanted state, generation numbers and the adapter calls that follow; see the module doc."""

    def __init__(self, adapter: Adapter, now: Callable[[], float]) -> None:
        self.adapter = adapter
        self._now = now  # the Redis server's clock, to judge request expiry
        self._cond = threading.Condition()
        self._drive = threading.Lock()
        self._gen = 0
        self._resumed_gen = 0
        self._commanded_drained = False
        self._deploy_fenced = False
        self._lease_fenced = False
        self._final = False
        self._in_drain = 0
        self._queued = 0  # drains asked for and not yet over (or dropped)
        self._enqueue = threading.Lock()
        self._drain_if_idle = _idle_drain(adapter)
        self._slow = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drainctl-drain")

    # -- what is wanted, and what is -------------------------------------------------------

    def _wanted_drained(self) -> bool:
        return self._commanded_drained or self._deploy_fenced or self._lease_fenced or self._final

    @property
    def state(self) -> State:
        """running, draining, drained or fenced: what the adapter does, not what it was told."""
        with self._cond:
            if self._lease_fenced:
                return State.FENCED
            if self._in_drain:
                return State.DRAINING
            wanted_drained = self._wanted_drained()
        accepting = getattr(self.adapter, "accepting", not wanted_drained)
        if wanted_drained:
            return State.DRAINING if accepting else State.DRAINED
        return State.RUNNING if accepting else State.DRAINED

    @property
    def final(self) -> bool:
        """True once SIGTERM (or a retiring worker) asked for the last drain."""
        return self._final

    # -- events ----------------------------------------------------------------------------

    def drain(self, deadline: float, expires_at: float | None = None) -> Future[DrainReport]:
        """Queue a drain behind those already queued; the future raises Superseded/Expired.

        With none queued and an idle adapter (``drain_if_idle``), it is over, on this thread,
        before this returns."""
        # Held until this drain is over or queued: a later one must not overtake it.
        with self._enqueue:
            with self._cond:
                self._gen += 1
                order = DrainOrder(self._gen, deadline, expires_at)
                first = self._queued == 0
                self._queued += 1
            if first and self._drain_if_idle is not None:
                done = self._drain_at_once(order, self._drain_if_idle)
                if done is not None:
                    return done
            return self._slow.submit(self._run_queued, order)

    def drain_final(self, deadline: float) -> DrainReport:
        """SIGTERM's drain: at once on this thread, and no resume undoes it."""
        with self._cond:
            self._gen += 1
            self._final = True
            order = DrainOrder(self._gen, deadline)
        return self._run_full(order)

    def resume(self) -> None:
        """Take work again, unless a fence, a lost lease or a final drain says otherwise."""
        with self._cond:
            self._gen += 1
            self._resumed_gen = gen = self._gen
            self._commanded_drained = False
        self._reconcile()
        self._nudge(gen)

    def deploy_fenced(self, deadline: float | None) -> None:
        """A deploy fence now covers this instance; with a deadline, queue its drain."""
        with self._cond:
            self._gen += 1
            self._deploy_fenced = True
        if deadline is not None:
            self.drain(deadline).add_done_callback(_log_failure)

    def deploy_fence_lifted(self) -> None:
        """The fence is gone (lifted by its deploy, or its signed expiry passed): resume."""
        with self._cond:
            self._deploy_fenced = False
        self.resume()

    def lease_fenced(self) -> None:
        """A clock that lost its lease to a newer release: fenced for good."""
        with self._cond:
            self._gen += 1
            self._lease_fenced = True

    def close(self) -> None:
        """Stop the drain thread; queued drains are dropped."""
        self._slow.shutdown(wait=False, cancel_futures=True)

    # -- driving the adapter ---------------------------------------------------------------

    def _drain_at_once(
        self, order: DrainOrder, drain_if_idle: Callable[[], DrainReport | None]
    ) -> Future[DrainReport] | None:
        """The drain, over on this thread if the adapter is idle; None to queue it."""
        done: Future[DrainReport] = Future()
        declined = False
        try:
            report = self._run(order, lambda _deadline: drain_if_idle())
            declined = report is None
            if report is not None:
                done.set_result(report)
        except Exception as exc:  # carried by the future, as the drain thread's would be
            done.set_exception(exc)
        finally:
            if not declined:
                self._dequeue()
        return None if declined else done

    def _run_queued(self, order: DrainOrder) -> DrainReport:
        try:
            return self._run_full(order)
        finally:
            self._dequeue()

    def _run_full(self, order: DrainOrder) -> DrainReport:
        report = self._run(order, self.adapter.drain)
        assert report is not None  # adapter.drain always reports
        return report

    def _dequeue(self) -> None:
        with self._cond:
            self._queued -= 1

    def _run(
        self, order: DrainOrder, drain: Callable[[float], DrainReport | None]
    ) -> DrainReport | None:
        """Drain the adapter by ``drain`` unless superseded or expired; None when ``drain``
        (an idle-only attempt) declined, leaving the adapter as it was."""
        with self._drive, self._cond:
            # Expiry first: nobody waits for an expired request's answer, superseded or not.
            if order.expires_at is not None and order.expires_at < self._now():
                raise Expired("the request expired while it waited behind another drain")
            if self._resumed_gen > order.ticket and not self._wanted_drained():
                raise Superseded("superseded by a later resume before it began")
            self._commanded_drained = True
            self._in_drain += 1
        started = time.monotonic()
        try:
            report = drain(order.deadline)
        finally:
            with self._cond:
                self._in_drain -= 1
                resumed = self._resumed_gen > order.ticket and not self._wanted_drained()
                self._cond.notify_all()
            self._reconcile()
        if report is not None and resumed and not report.aborted:
            report.aborted = True
            report.duration_s = round(time.monotonic() - started, 4)
        return report

    def _reconcile(self) -> None:
        """Resume the adapter if that is what is wanted now (idempotent for every adapter)."""
        with self._drive:
            with self._cond:
                if self._wanted_drained():
                    return
            self.adapter.resume()

    def _nudge(self, gen: int) -> None:
        """Repeat a resume until a drain that was entering the adapter has returned.

        The drain closes the adapter's gate as its first act; a resume that got there first is
        undone by it, and the drain would then wait for the work in flight before returning.
        """
        give_up = time.monotonic() + NUDGE_FOR
        while time.monotonic() < give_up:
            with self._cond:
                if not self._in_drain or self._gen != gen:
                    return
                self._cond.wait(NUDGE_EVERY)
                if not self._in_drain or self._gen != gen:
                    return
            self._reconcile()


def _idle_drain(adapter: Adapter) -> Callable[[], DrainReport | None] | None:
    """The adapter's ``drain_if_idle``, unless a subclass overrides ``drain`` below it: that
    drain may do more than close the gate (count, flush...), so it must always run."""
    drain_if_idle = cast(
        "Callable[[], DrainReport | None] | None", getattr(adapter, "drain_if_idle", None)
    )

    def owner(name: str) -> type:
        return next((cls for cls in type(adapter).__mro__ if name in vars(cls)), object)

    if drain_if_idle is None or not issubclass(owner("drain_if_idle"), owner("drain")):
        return None
    return drain_if_idle


def _log_failure(future: Future[DrainReport]) -> None:
    exc = future.exception()
    if exc is not None and not isinstance(exc, Superseded):
        logger.error("fence drain failed: %s", exc, exc_info=exc)
