"""Celery beat that survives deploys.

``celery -A proj beat -S drainctl.adapters.celery_beat:Scheduler`` runs this
``celery.beat.Scheduler`` on the clock core (``drainctl.clock``), like the APScheduler clock:

- it reads the ordinary ``beat_schedule`` (interval, crontab and solar entries, ``args``,
  ``kwargs``, ``options``), plus two optional keys per entry: ``catch_up`` (``"latest"``, the
  default, or ``"each"``) and ``misfire_grace`` (seconds, default 300); see
  ``celery_beat_entries`` for how due times are named;
- it sends only while it holds the app's clock lease (a newer release takes it over at start, an
  older one still alive is fenced at its next send, a same release stands by, a SIGKILLed holder
  is replaced within the lease TTL), each send claimed with a once-key per (entry, due time);
- each entry's last sent due time lives in Redis (not a shelve file on the dyno's disk), so a
  deploy or failover resumes where the last beat stopped;
- it drains over the control channel (stop sending, save, reply with each entry's next due time)
  and on exit (Celery's SIGTERM handling closes the scheduler, once a send in progress has
  finished: save, release the lease).

For ``celery worker --beat`` call ``install_beat(app)`` where the app is defined.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from celery import Celery, beat

from drainctl.adapters.base import DrainReport
from drainctl.adapters.celery_beat_entries import BeatEntry, beat_entry, iso, restored_next
from drainctl.clock.core import ClockCore, ClockOptions
from drainctl.clock.deploy_grace import DEFAULT_DEPLOY_GRACE, now_ms
from drainctl.clock.schedule_store import StoredRun
from drainctl.config import Settings
from drainctl.listener import ControlListener

__all__ = ["Scheduler", "install_beat"]

logger = logging.getLogger(__name__)

SCHEDULER_PATH = "drainctl.adapters.celery_beat:Scheduler"
STANDBY_TICK = 0.2  # how soon a beat that does not send looks again whether it may
MAX_TICK = 1.0  # so a restore, drain or resume takes effect within a second
_DRAINCTL_KEYS = ("catch_up", "misfire_grace")


def install_beat(app: Celery) -> None:
    """Make ``celery worker --beat`` (and ``celery beat`` without ``-S``) use this scheduler."""
    app.conf.beat_scheduler = SCHEDULER_PATH


class Scheduler(beat.Scheduler):  # type: ignore[misc]  # Celery ships no types
    """The drainctl beat scheduler; see the module docstring."""

    def __init__(self, app: Celery, *args: Any, **kwargs: Any) -> None:
        self.entries: dict[str, BeatEntry] = {}
        self.sent = 0
        self._lock = threading.Lock()
        # Celery's SIGTERM/SIGINT handler closes the scheduler, which takes _lock: a signal
        # handled while this thread holds it waits until it is released (see _exclusive).
        self._holder: int | None = None
        self._deferred: tuple[int, Callable[[int, FrameType | None], Any]] | None = None
        self._closed = False
        grace = float(app.conf.get("drainctl_deploy_grace") or DEFAULT_DEPLOY_GRACE)
        self.core = ClockCore(self, ClockOptions(deploy_grace=grace))
        super().__init__(app, *args, **kwargs)

    # -- Celery's side -----------------------------------------------------------------------

    def setup_schedule(self) -> None:
        """Read ``beat_schedule``, then join the control channel and wait for the lease."""
        for name, spec in dict(self.app.conf.beat_schedule or {}).items():
            options = {key: spec[key] for key in _DRAINCTL_KEYS if key in spec}
            celery_spec = {key: value for key, value in spec.items() if key not in options}
            entry = self.Entry(**dict(celery_spec, name=name, app=self.app))
            self.entries[name] = beat_entry(entry, options)
        self.data = {name: item.entry for name, item in self.entries.items()}
        settings = Settings.from_env()
        listener = ControlListener(
            adapter=self, settings=settings.replace(process_type=settings.process_type or "beat")
        )
        self.core.bind(listener)
        self._defer_signals_while_exclusive()
        listener.start()
        self.core.start()

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Send what is due (when holding the lease); seconds until the next look."""
        if not self.core.firing:
            return STANDBY_TICK
        with self._exclusive():
            now = now_ms()
            for item in self.entries.values():
                if item.next_ms <= now:
                    self._send_due(item, now)
            upcoming = min((item.next_ms for item in self.entries.values()), default=None)
        if upcoming is None:
            return MAX_TICK
        return max(0.0, min((upcoming - now_ms()) / 1000, MAX_TICK, float(self.max_interval)))

    def sync(self) -> None:
        """Nothing to do: each send records its due time in Redis as it is claimed."""

    def close(self) -> None:
        """On exit (Celery's SIGTERM/SIGINT handling, or a stop): save, release the lease."""
        if not self._closed and self.core.listener is not None:
            self._closed = True
            self.core.drain_started()
            self.core.record_drain()
            with self._exclusive():
                saved = self.core.persist()
            self.core.release()
            self.core.listener.stop()
            logger.info("beat: drained on exit, saved %s", ", ".join(saved) or "nothing")
        super().close()

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """The schedule's lock. A signal handled meanwhile on this thread runs once it is
        released: a send in progress finishes, and closing does not wait on itself."""
        with self._lock:
            self._holder = threading.get_ident()
            try:
                yield
            finally:
                self._holder = None
        deferred, self._deferred = self._deferred, None
        if deferred is not None:
            signum, handler = deferred
            handler(signum, None)

    def _defer_signals_while_exclusive(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers run on the main thread only (`celery worker --beat`)
        for signum in (signal.SIGTERM, signal.SIGINT):
            handler = signal.getsignal(signum)
            if callable(handler):
                signal.signal(signum, functools.partial(self._on_signal, handler))

    def _on_signal(
        self, handler: Callable[[int, FrameType | None], Any], signum: int, frame: FrameType | None
    ) -> None:
        if self._holder == threading.get_ident():
            self._deferred = (signum, handler)
            return
        handler(signum, frame)

    @property
    def info(self) -> str:
        """Shown in ``celery beat``'s banner."""
        return "    . drainctl: lease with fencing, once-keys, schedule in Redis"

    def _send_due(self, item: BeatEntry, now: int) -> None:
        runs = item.sendable(item.due_runs(now), now, self.core.grace.covers)
        for due_ms in self.core.claim(item.name, runs) if runs else []:
            self._send(item, due_ms)

    def _send(self, item: BeatEntry, due_ms: int) -> None:
        entry = item.entry
        options = dict(entry.options)
        headers = dict(options.get("headers") or {})
        options["headers"] = headers | {"celery_beat_task": True, "drainctl_due_ms": due_ms}
        logger.info("beat: sending %s (%s) due %s", item.name, entry.task, iso(due_ms))
        try:
            self.app.send_task(
                entry.task, entry.args, entry.kwargs, producer=self.producer, **options
            )
        except Exception:
            # Claimed but not sent: logged, never retried (a retry could send it twice).
            logger.exception("beat: could not send %s due %s", item.name, iso(due_ms))
            return
        self.sent += 1

    # -- ClockHost: what the core asks of us -------------------------------------------------

    def restore(self, stored: dict[str, StoredRun], not_before_ms: int | None) -> None:
        """Each time we become the holder: each entry resumes after its last sent run."""
        assert self.core.store is not None
        gone = sorted(stored.keys() - self.entries.keys())
        for name in gone:
            logger.warning("beat entry %r of the saved schedule no longer exists: dropped", name)
        self.core.store.forget(gone)
        with self._exclusive():
            now = now_ms()
            for name, item in self.entries.items():
                run = stored.get(name, StoredRun())
                item.next_ms = restored_next(item, run.last_ms, run.next_ms, now)
                if not_before_ms is not None and item.next_ms <= not_before_ms:
                    item.next_ms = item.after(not_before_ms)
                logger.info("beat entry %r: next due %s", name, iso(item.next_ms))

    def sync_firing(self) -> None:
        """Nothing to switch: ``tick`` asks the core whether it may send."""

    def persist(self, token: int) -> list[str]:
        """Save each entry's next due time under ``token``; the ``name@time`` entries saved."""
        assert self.core.store is not None
        nexts = {name: item.next_ms for name, item in self.entries.items() if item.next_ms}
        if self.core.store.save(token, nexts) is None:
            return []
        return [f"{name}@{iso(ms)}" for name, ms in nexts.items()]

    # -- Adapter: what the listener asks of us -------------------------------------------------

    def drain(self, deadline: float) -> DrainReport:
        """Stop sending (a send in progress finishes first), save the schedule."""
        started = time.monotonic()
        self.core.drain_started()
        self.core.record_drain()
        with self._exclusive():  # a tick sending right now has finished
            saved = self.core.persist()
        return DrainReport(handed_back=saved, duration_s=round(time.monotonic() - started, 4))

    def resume(self) -> None:
        """Send again, if holding the lease."""
        self.core.resumed()

    @property
    def accepting(self) -> bool:
        """False while drained or fenced: the listener reports its state from this."""
        return self.core.accepting

    def status(self) -> dict[str, Any]:
        """Lease, token, next due run and counters, for the heartbeat."""
        upcoming = min((item.next_ms for item in self.entries.values() if item.next_ms), default=0)
        return {
            "in_flight": 0,
            "jobs_done": self.sent,
            "errors": 0,
            "last_error": None,
            "missed": sum(item.missed for item in self.entries.values()),
            **self.core.status(),
            "next_due": iso(upcoming) if upcoming and self.core.firing else None,
        }
