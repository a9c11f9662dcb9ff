"""ControlListener: the daemon thread a clock or worker embeds to answer control requests.

Two threads, two Redis connections: ``serve`` blocks on the instance's inbox and dispatches
requests; ``beat`` writes the heartbeat every interval (and soon after the state changes,
unless the reply to a drain or resume carried the write).
Idle, that is one command per heartbeat plus one blocking read per ``block_timeout``. A third
thread, ``drain``, runs drains that wait for work in flight, one at a time. Every change of what
the instance should do goes through one ordered path, :class:`drainctl.lifecycle.Lifecycle` (its
docstring has the states, events, threads and locks); the deploy fence (``drainctl.fence``) is
one of its inputs.

Requests are vetted and answered by :class:`drainctl.dispatch.Dispatcher`. Nothing here may
crash or block the host: handler errors become error replies, malformed messages are logged and
dropped, and a Redis outage is logged once and retried with capped, jittered
exponential backoff until Redis is back.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import psutil
from redis.backoff import ExponentialWithJitterBackoff

from drainctl.adapters.base import Adapter, DrainReport, NullAdapter
from drainctl.channel import Ahead, Inbox
from drainctl.config import Settings, parse_secrets
from drainctl.connection import REDIS_ERRORS, OutageLog, ServerClock, connect
from drainctl.dispatch import Dispatcher
from drainctl.eviction import warn_if_evicting
from drainctl.fence import Change, FenceGuard
from drainctl.identity import Identity
from drainctl.keys import Keys
from drainctl.lifecycle import Lifecycle
from drainctl.protocol import Command, Reply, Request, State
from drainctl.registry import INDEX_REFRESH_EVERY, Registry
from drainctl.signing import Gate, NonceStore, Signer
from drainctl.topology import on_cluster

logger = logging.getLogger(__name__)

# Pushed into our own inbox by stop() to wake the blocking read at once.
_WAKE = b"\x00drainctl-wake"
_MB = 1024 * 1024
# A drain's or resume's reply carries the registry write itself (see state_write). Any other
# change (draining, a fence, a lease) reaches the registry this long after it happens: a quick
# draining -> drained costs one write instead of two. Short, and always well inside the entry's
# TTL (three beats): a longer delay at a short --heartbeat-interval let the entry expire.
STATE_BEAT_DELAY = 0.1


class ControlListener:
    """Answers ``ping``, ``status``, ``drain`` and ``resume`` for one process.

    Use ``start()``/``stop()`` or ``with ControlListener(...):``. ``app`` and ``process_type``
    default to the environment (see ``Settings.from_env``).
    """

    def __init__(
        self,
        app: str | None = None,
        process_type: str | None = None,
        redis_url: str | None = None,
        adapter: Adapter | None = None,
        *,
        settings: Settings | None = None,
        secret: str | Sequence[str] | None = None,
    ) -> None:
        base = settings if settings is not None else Settings.from_env()
        self.settings = base.replace(
            app=app,
            process_type=process_type,
            redis_url=redis_url,
            secrets=None if secret is None else parse_secrets(secret),
        )
        self.identity = Identity.from_settings(self.settings)
        # Built once: every reply carries it, and the identity never changes.
        self.instance_doc = self.identity.as_dict()
        self.adapter: Adapter = adapter if adapter is not None else NullAdapter()
        self.keys = Keys(self.identity.app)
        self.redis = connect(
            self.settings, max_connections=2, name=f"drainctl-listener-{self.identity.instance_id}"
        )
        signer = Signer.from_settings(self.settings)
        self.registry = Registry(
            self.redis, self.identity.app, signer, index_apps=not on_cluster(self.settings)
        )
        self.clock = ServerClock()
        self.deploy_fence = FenceGuard(
            self.keys, self.identity.release, self.identity.process_type, signer
        )
        self.inbox = Inbox(self.redis, self.keys, self.identity.instance_id, signer)
        nonces = NonceStore(self.redis, self.keys, self.identity.instance_id)
        self.gate = (
            None
            if signer is None
            else Gate(
                signer,
                nonces,
                self.clock,
                self.identity.process_type,
                not_before=self.identity.started_at,  # no replay into a later instance
            )
        )
        self.lifecycle = Lifecycle(self.adapter, self.clock.now)
        self._stopping = threading.Event()
        self._wake_beat = threading.Event()
        self._entry = _EntryWrites()
        self.outage = OutageLog(self.settings.redis_url)
        self._backoff = ExponentialWithJitterBackoff(cap=self.settings.reconnect_cap, base=0.05)
        self._status_failing = False
        self._threads: list[threading.Thread] = []
        self._memory = _Memory(self.settings.heartbeat_interval)
        self.dispatcher = Dispatcher(self)

    @classmethod
    def from_env(cls, adapter: Adapter | None = None, **overrides: Any) -> ControlListener:
        """A listener configured from ``DRAINCTL_*``, ``REDIS_URL`` and Heroku's dyno metadata."""
        return cls(adapter=adapter, settings=Settings.from_env(**overrides))

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> ControlListener:
        """Register and start the daemon threads; never raises when Redis is down."""
        with contextlib.suppress(*REDIS_ERRORS):  # if Redis is down, the serve thread retries
            self.inbox.open()
        if self._beat_once(refresh_index=True):  # Redis is up: say once if it may evict our keys
            warn_if_evicting(self.redis, self.settings.redis_url)
        for name, target in (("serve", self._serve), ("beat", self._beat)):
            thread = threading.Thread(target=target, name=f"drainctl-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        logger.info(
            "drainctl listener %s started for app %s", self.identity.label, self.identity.app
        )
        if self.gate is None:
            logger.warning("no DRAINCTL_SECRET: control messages are unauthenticated")
        # A release phase may await this release's verdict (deploy/ sits above the listener);
        # a daemon thread that never raises or blocks, and ends when the listener stops.
        from drainctl.deploy.confirm import confirm_in_background

        confirm_in_background(self.redis, self.settings, self.identity, self._stopping)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the threads and remove this instance from the registry."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._wake_beat.set()
        # If Redis is down the serve thread is in its backoff wait, which the stop event ends.
        with contextlib.suppress(*REDIS_ERRORS):
            self.redis.rpush(self.inbox.key, _WAKE)
        for thread in self._threads:
            thread.join(timeout)
        self.lifecycle.close()
        try:
            self.registry.remove(self.identity.instance_id)
        except REDIS_ERRORS as exc:
            logger.warning("could not remove registry entry (it will expire): %s", exc)
        self.redis.close()
        self.redis.connection_pool.disconnect()

    def __enter__(self) -> ControlListener:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- state -----------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """running, draining, drained or fenced, as the adapter really is (see Lifecycle)."""
        return self.lifecycle.state

    def drain(self, deadline: float, *, final: bool = False) -> DrainReport:
        """Drain locally and wait for it; ``final`` (SIGTERM, a retiring worker): no resume
        undoes it and it starts at once. Raises Superseded if a resume overtook it."""
        try:
            if final:
                return self.lifecycle.drain_final(deadline)
            return self.lifecycle.drain(deadline).result()
        finally:
            self._wake_beat.set()

    def resume(self) -> dict[str, Any]:
        """Take work again (unless fenced or shutting down); also ends a drain still waiting."""
        self.lifecycle.resume()
        self._wake_beat.set()
        return {}

    def beat_soon(self) -> None:
        """Write the heartbeat shortly (a state change), not at the next interval."""
        self._wake_beat.set()

    def fence(self) -> None:
        """Mark this instance fenced for good: a clock that lost its lease to a newer release."""
        self.lifecycle.lease_fenced()
        self._wake_beat.set()

    def heartbeat_doc(self, counters: dict[str, Any] | None = None) -> dict[str, Any]:
        """Identity, state, adapter counters, memory and the beat time, as in the registry."""
        return {
            **self.instance_doc,
            **(counters if counters is not None else self.adapter.status()),
            "state": self.state.value,
            "deploy_fenced": self.deploy_fence.fenced,
            "fence_missing": self.deploy_fence.missing,
            "memory_mb": self._memory.mb(),
            "heartbeat_interval": self.settings.heartbeat_interval,
            "beat_at": self.clock.now(),
        }

    def _counters_for_beat(self) -> dict[str, Any]:
        # A broken adapter must not make the instance vanish from the registry.
        try:
            counters = self.adapter.status()
        except Exception as exc:
            if not self._status_failing:
                logger.exception("adapter status failed; heartbeating without its counters")
            self._status_failing = True
            return {"status_error": f"{type(exc).__name__}: {exc}"}
        self._status_failing = False
        return counters

    # -- threads ---------------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            self._serve_requests()
        finally:
            self.inbox.close()

    def _serve_requests(self) -> None:
        synced = False
        # The answer to the last request, sent with the next blocking read in one round trip.
        answer: tuple[Request, Reply] | None = None
        while not self._stopping.is_set():
            try:
                if not synced:
                    self.clock.sync(self.redis)
                    synced = True
                if answer is None:
                    raw = self.inbox.pop(self.settings.block_timeout)
                else:
                    request, reply = answer
                    answer = None
                    raw = self.inbox.reply_and_pop(
                        request,
                        reply,
                        self.clock.now(),
                        self.settings.block_timeout,
                        self._ahead_of(request),
                    )
            except REDIS_ERRORS as exc:
                synced = False
                failures = self.outage.failed(exc)
                self._stopping.wait(self._backoff.compute(failures))
                continue
            self.outage.recovered()
            if raw is not None and raw != _WAKE:
                try:
                    answer = self.dispatcher.receive(raw)
                except Exception:
                    # A bug triggered by one odd message must not stop the listener for good.
                    logger.exception("unexpected error handling a control message")
        if answer is not None:  # answered as stop() began (a one-off's drain ends with it)
            request, reply = answer
            with contextlib.suppress(*REDIS_ERRORS):
                self.inbox.reply(request, reply, self.clock.now(), self._ahead_of(request))

    def _ahead_of(self, request: Request) -> Ahead | None:
        # A drain's or resume's new state reaches the registry with its reply.
        changes = request.command in (Command.DRAIN, Command.RESUME)
        return self.state_write() if changes else None

    def _beat(self) -> None:
        beats = 1  # start() registered already
        while True:
            woken = self._wake_beat.wait(self.settings.heartbeat_interval)
            if woken:
                self._stopping.wait(STATE_BEAT_DELAY)
            self._wake_beat.clear()
            if self._stopping.is_set():
                return
            self._check_fence_expiry()
            ok = self._beat_once(refresh_index=beats % INDEX_REFRESH_EVERY == 0, if_changed=woken)
            # After an outage, register afresh: Redis may have restarted empty.
            beats = beats + 1 if ok else 0

    def _beat_once(self, *, refresh_index: bool, if_changed: bool = False) -> bool:
        """One heartbeat; ``if_changed`` (woken by a change): none when a reply wrote it already."""
        write, landed = None, False
        try:
            if if_changed and not refresh_index:
                write = self._entry.start_if_changed(self._beat_doc)
            else:
                write = self._entry.start(self._beat_doc)
            if write is None:
                return True
            registered = self.registry.beat(
                write,
                self.settings.heartbeat_interval,
                refresh_index=refresh_index,
                read=self.deploy_fence.key,  # a restart of a fenced release comes up drained
            )
            landed = True
            if registered is not None:
                self._fence_changed(self.deploy_fence.observe(registered.read))
        except REDIS_ERRORS as exc:
            self.outage.failed(exc)
            return False
        except Exception:
            logger.exception("heartbeat failed")
            return False
        finally:
            if write is not None and not self._entry.done(write, landed):
                self._wake_beat.set()
        return True

    def state_write(self) -> Ahead | None:
        """The registry write a drain's or resume's reply carries ahead of it, in its round
        trip: the registry shows the new state by the time the requester reads the reply.
        None, and the beat writes it, if the document cannot be built."""
        write = None
        try:
            write = self._entry.start(self._beat_doc)
            command = self.registry.refresh(write, self.settings.heartbeat_interval)
        except Exception:
            logger.exception("could not build the registry write for a reply")
            if write is not None:
                self._entry.done(write, landed=False)
            self._wake_beat.set()
            return None

        def answered(response: Any) -> None:
            # None: the entry had expired (the beat registers it again); else refused or failed.
            landed = response is not None and not isinstance(response, BaseException)
            if not self._entry.done(write, landed):
                self._wake_beat.set()

        return Ahead(command, answered)

    def _beat_doc(self) -> dict[str, Any]:
        return self.heartbeat_doc(self._counters_for_beat())

    def _check_fence_expiry(self) -> None:
        """Past the fence's own expiry, read its key: a kept fence lasts longer, else lift."""
        now = self.clock.now()
        if not self.deploy_fence.due(now):
            return
        try:
            raw: bytes | None = self.redis.get(self.deploy_fence.key)  # type: ignore[assignment]
        except REDIS_ERRORS as exc:
            self.outage.failed(exc)
            return
        self._fence_changed(self.deploy_fence.confirm_expiry(raw, now))

    def _fence_changed(self, change: Change) -> None:
        if change is Change.FENCED:
            fence = self.deploy_fence.fence
            # Drained with the deploy's own deadline; waiting for work in flight is the drain
            # thread's, not this one's.
            self.lifecycle.deploy_fenced(fence.drain_deadline if fence else 0.0)
        elif change is Change.LIFTED:
            self.lifecycle.deploy_fence_lifted()
        else:
            return
        self._wake_beat.set()


class _Memory:
    """The process's resident memory in MB, read at most once per heartbeat interval.

    Reading it (/proc) cost a drain's or resume's reply more CPU than all the rest of building
    it, and a fleet of 500 listeners answers at once on a few cores.
    """

    def __init__(self, every: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._process = psutil.Process()
        self._every = every
        self._clock = clock
        self._read_at = -math.inf
        self._mb = 0.0

    def mb(self) -> float:
        now = self._clock()
        if now - self._read_at >= self._every:
            self._mb = round(self._process.memory_info().rss / _MB, 1)
            self._read_at = now
        return self._mb


class _EntryWrites:
    """What this instance's registry entry holds, as far as its own writes tell.

    Two threads write it: the beat thread, and the drain or resume replies that carry the write
    in their round trip. A beat woken by a change skips its write when the entry already holds
    the same document (beat time and memory aside). Writes in flight together on two
    connections may land in either order, so none of them is trusted: the next beat writes.
    """

    _VOLATILE = ("beat_at", "memory_mb")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flying = 0
        self._overlapped = False
        self._held: dict[str, Any] | None = None

    def start(self, make_doc: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The document of a write about to be sent, built in the order writes start."""
        with self._lock:
            return self._start(make_doc())

    def start_if_changed(self, make_doc: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        """As :meth:`start`, or None when the entry holds that document already."""
        with self._lock:
            doc = make_doc()
            if self._held is not None and self._held == self._lasting(doc):
                return None
            return self._start(doc)

    def _start(self, doc: dict[str, Any]) -> dict[str, Any]:
        # Any write that starts while another is in flight overlaps it: neither is trusted.
        self._overlapped = self._overlapped or self._flying > 0
        self._flying += 1
        return doc

    def done(self, doc: dict[str, Any], landed: bool) -> bool:
        """Record how the write of ``doc`` ended; False when the entry may hold something else."""
        with self._lock:
            self._flying -= 1
            trusted = landed and not self._overlapped
            if self._flying == 0:
                self._overlapped = False
            self._held = self._lasting(doc) if trusted else None
            return trusted

    def _lasting(self, doc: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in doc.items() if k not in self._VOLATILE}
