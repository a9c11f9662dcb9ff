"""The scheduler-agnostic clock: lease, once-key claims, stored schedule, drain and SIGTERM.

Every clock adapter (APScheduler, Celery beat) owns one ``ClockCore`` and keeps only what is
specific to its scheduler, behind ``ClockHost``: restore its entries from what Redis remembers,
start or stop firing, and list the next run times to save. The core decides *when*:

- it fires only while it holds the app's clock lease (``lease``, ``keeper``) and is neither
  drained nor fenced; ``firing`` says so, and the host's ``sync_firing`` applies it;
- each time it becomes the holder it restores the host from the stored schedule merged with the
  latest fires it has seen itself (so a Redis that lost its data never makes it fire a run twice);
- every run is claimed first (``claim``): token still current, once-key per (entry, run time);
- a drain stops firing and leaves its time for the deploy grace (``deploy_grace``);
- SIGTERM drains, saves the schedule and releases the lease before the process exits.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from drainctl.adapters.base import DrainReport
from drainctl.clock.deploy_grace import DEFAULT_DEPLOY_GRACE, DeployGrace, now_ms
from drainctl.clock.keeper import LeaseKeeper
from drainctl.clock.lease import Lease, Verdict
from drainctl.clock.schedule_store import DEFAULT_SCHEDULE_TTL, ScheduleStore, StoredRun
from drainctl.connection import REDIS_ERRORS, connect
from drainctl.errors import ConfigError
from drainctl.keys import Keys
from drainctl.listener import ControlListener
from drainctl.shutdown import drain_on_sigterm
from drainctl.signing import Signer

logger = logging.getLogger(__name__)

DEFAULT_ONCE_TTL = 24 * 3600.0


@dataclass(frozen=True)
class ClockOptions:
    """How long the lease, once-keys and stored schedule live, and the clock-wide deploy grace.

    ``lease_ttl`` None means the listener's ``Settings.lease_ttl`` (15 s, ``DRAINCTL_LEASE_TTL``).
    """

    lease_ttl: float | None = None
    once_ttl: float = DEFAULT_ONCE_TTL
    schedule_ttl: float = DEFAULT_SCHEDULE_TTL
    deploy_grace: float = DEFAULT_DEPLOY_GRACE


class ClockHost(Protocol):
    """What a scheduler adapter does for the core (called from the lease thread or a drain)."""

    def restore(self, stored: dict[str, StoredRun], not_before_ms: int | None) -> None:
        """Resume each entry after its last fire (see ``ClockCore.on_acquired``)."""

    def sync_firing(self) -> None:
        """Fire exactly when ``ClockCore.firing``."""

    def persist(self, token: int) -> list[str]:
        """Save the next run times under ``token``; the ``id@time`` entries saved."""


class ClockCore:
    """One clock's standing: lease token, drained, fenced; see the module docstring."""

    def __init__(self, host: ClockHost, options: ClockOptions | None = None) -> None:
        self.host = host
        self.options = options or ClockOptions()
        self.cond = threading.Condition()
        self.grace = DeployGrace(self.options.deploy_grace)
        self.token: int | None = None
        self.fenced = False
        self.drained = False
        self.seen: dict[str, int] = {}  # entry -> latest run time (ms) seen fired
        self.listener: ControlListener | None = None
        self.lease: Lease | None = None
        self.store: ScheduleStore | None = None
        self.keeper: LeaseKeeper | None = None

    @property
    def accepting(self) -> bool:
        """False while drained or fenced: the clock adapters report their state from this."""
        return not (self.drained or self.fenced)

    def bind(self, listener: ControlListener) -> None:
        """Connect to the listener's Redis (two connections at most) and identity."""
        settings = listener.settings
        client = connect(settings, max_connections=2)
        keys = Keys(listener.identity.app)
        self.listener = listener
        self.lease = Lease(
            client,
            keys,
            instance_id=listener.identity.instance_id,
            release=listener.identity.release,
            ttl=self.options.lease_ttl or settings.lease_ttl,
            once_ttl=self.options.once_ttl,
            schedule_ttl=self.options.schedule_ttl,
            signer=Signer.from_settings(settings),
        )
        self.store = ScheduleStore(client, keys, self.options.schedule_ttl)
        self.keeper = LeaseKeeper(self.lease, self.on_acquired, self.on_lost, self.follow)

    def start(self) -> None:
        """Start keeping the lease (the first attempt takes over from an older release)."""
        if self.keeper is not None:
            self.keeper.start()

    @property
    def firing(self) -> bool:
        """Holding the lease, not drained, not fenced."""
        with self.cond:
            return self.token is not None and not self.drained and not self.fenced

    # -- lease callbacks (the keeper's thread) -------------------------------------------

    def on_acquired(self, token: int) -> None:
        """Restore the host, open the deploy grace for the gap since the last drain, fire."""
        assert self.store is not None
        assert self.keeper is not None
        drained_ms = self.store.take_drained()
        if drained_ms is not None:
            self.grace.add(drained_ms, now_ms())
        # Taking over after Redis lost its data and the holder with it: what the holder fired
        # since our last look is unrecorded, so fire nothing due before we saw the loss.
        loss = self.keeper.taken_after_loss_at
        self.host.restore(self.stored(), None if loss is None else round(loss * 1000))
        with self.cond:
            self.token = token
        self.host.sync_firing()
        self._lease_changed()

    def on_lost(self, verdict: Verdict) -> None:
        """Stop firing; a fenced clock stays fenced and tells its listener."""
        with self.cond:
            self.token = None
            self.fenced = self.fenced or verdict is Verdict.FENCED
        self.host.sync_firing()
        if verdict is Verdict.FENCED and self.listener is not None:
            self.listener.fence()
        self._lease_changed()

    def _lease_changed(self) -> None:
        # The heartbeat shows the lease (status()): the registry learns of it now, not a beat later.
        if self.listener is not None:
            self.listener.beat_soon()

    def follow(self) -> None:
        """A standby reads what the holder fired, in case Redis loses it before we take over."""
        if self.store is not None:
            for entry, ms in self.store.lasts().items():
                self.note(entry, [ms])

    # -- schedule ------------------------------------------------------------------------

    def note(self, entry: str, fired_ms: list[int]) -> None:
        """Remember run times that fired (ours, or the holder's)."""
        if fired_ms:
            with self.cond:
                self.seen[entry] = max(self.seen.get(entry, 0), *fired_ms)

    def stored(self) -> dict[str, StoredRun]:
        """What Redis remembers, each last fire raised to the latest we have seen ourselves."""
        assert self.store is not None
        stored = self.store.load()
        with self.cond:
            seen = dict(self.seen)
        for entry, ms in seen.items():
            run = stored.get(entry, StoredRun())
            if run.last_ms is None or run.last_ms < ms:
                stored[entry] = StoredRun(run.next_ms, ms)
        return stored

    def claim(self, entry: str, run_ms: list[int]) -> list[int]:
        """The run times of ``entry`` that may fire now (once-keys set); [] when refused."""
        with self.cond:
            token = self.token
        if token is None or self.lease is None or self.keeper is None:
            return []
        try:
            granted = self.lease.claim(token, entry, run_ms)
        except REDIS_ERRORS as exc:
            logger.warning("cannot claim a run of %r (%s): pausing until Redis is back", entry, exc)
            granted = None
        if granted is None:
            # Not dropped for good: the restore when we hold the lease again starts after the
            # last run we saw fired, so the run fires then (within its grace).
            with self.cond:
                self.token = None
            self.host.sync_firing()
            self.keeper.recheck()
            return []
        self.note(entry, granted)
        if len(granted) < len(run_ms):
            logger.info("%r: %d run(s) already fired elsewhere", entry, len(run_ms) - len(granted))
        return granted

    # -- drain ---------------------------------------------------------------------------

    def drain_started(self) -> None:
        """Stop firing (the caller then stops its scheduler); see ``record_drain``."""
        with self.cond:
            self.drained = True
        self.grace.drained()

    def record_drain(self) -> None:
        """Leave the time our drain began in Redis, for the next holder's deploy grace."""
        with self.cond:
            token = self.token
        if token is None or self.store is None:
            return
        try:
            self.store.mark_drained(token, self.grace.drained(), self.options.deploy_grace)
        except REDIS_ERRORS as exc:
            logger.warning("could not record the drain time: %s", exc)

    def resumed(self) -> None:
        """Fire again if holding the lease; runs due while drained get the deploy grace."""
        self.grace.resumed()
        with self.cond:
            self.drained = False
            self.cond.notify_all()
        self.host.sync_firing()

    def persist(self) -> list[str]:
        """Save the host's next run times if we hold the lease; ``id@time`` entries saved."""
        with self.cond:
            token = self.token
        if token is None:
            return []
        try:
            return self.host.persist(token)
        except REDIS_ERRORS as exc:
            logger.warning("could not persist the schedule: %s", exc)
            return []

    def release(self) -> None:
        """Give the lease up so a successor need not wait."""
        if self.keeper is not None:
            self.keeper.release()
        with self.cond:
            self.token = None

    def install_sigterm(self, *, grace: float = 30.0, margin: float = 5.0) -> None:
        """From the main thread: on SIGTERM drain, persist, release the lease, exit 0."""
        if self.listener is None:
            raise ConfigError("install_sigterm needs a started clock: call run() first")
        drain_on_sigterm(
            self.listener,
            grace=grace,
            margin=margin,
            before_exit=[self._persist_hook, self._release_hook],
        )

    def _persist_hook(self, report: DrainReport) -> None:
        self.persist()

    def _release_hook(self, report: DrainReport) -> None:
        self.release()

    def status(self) -> dict[str, Any]:
        """Where this clock stands with the lease, for the heartbeat."""
        with self.cond:
            token = self.token
        return {
            "lease": self.keeper.verdict.value if self.keeper else "unbound",
            "fencing_token": token,
        }
