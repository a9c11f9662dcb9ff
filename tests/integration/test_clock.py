"""The clock adapter with a real APScheduler BackgroundScheduler and a real redis-server."""

from __future__ import annotations

import collections
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import pytest
import redis
from apscheduler.schedulers.background import BackgroundScheduler

from drainctl.adapters.apscheduler import ClockAdapter, scheduled_run_time
from drainctl.channel import ControlClient
from drainctl.config import Settings
from drainctl.errors import ConfigError
from drainctl.listener import ControlListener
from drainctl.protocol import Command
from tests.polling import wait_for

ANCHOR = datetime(2024, 1, 1, tzinfo=timezone.utc)
StartClock = Callable[..., ClockAdapter]


class Fires:
    """What the jobs record: scheduled run time (ms) -> times it ran."""

    def __init__(self) -> None:
        self.counts: collections.Counter[int] = collections.Counter()
        self.lock = threading.Lock()

    def record(self) -> None:
        when = scheduled_run_time()
        assert when is not None
        with self.lock:
            self.counts[round(when.timestamp() * 1000)] += 1

    def __len__(self) -> int:
        with self.lock:
            return len(self.counts)

    def grid(self, interval_ms: int) -> tuple[list[int], list[int]]:
        """(duplicated run times, missed grid points) between the first and last run."""
        with self.lock:
            times = sorted(self.counts)
            duplicates = [ms for ms, n in self.counts.items() if n > 1]
        missed = [ms for ms in range(times[0], times[-1] + 1, interval_ms) if ms not in times]
        return duplicates, missed


@pytest.fixture
def start_clock(settings: Settings) -> Iterator[StartClock]:
    """Start a clock in this process: a BackgroundScheduler, its adapter and a listener."""
    clocks: list[ClockAdapter] = []

    def start(
        add_jobs: Callable[[BackgroundScheduler], None], release: str = "v1", **kw: float
    ) -> ClockAdapter:
        scheduler = BackgroundScheduler(timezone=timezone.utc)
        add_jobs(scheduler)
        clock = ClockAdapter(scheduler, **kw)
        listener = ControlListener(
            adapter=clock, settings=settings.replace(process_type="clock", release=release)
        )
        clock.run(listener, sigterm=False)
        clocks.append(clock)
        wait_for(lambda: clock.status()["lease"] == "held")
        return clock

    yield start
    for clock in clocks:
        clock.close()


def ticking(fires: Fires, seconds: float, **job: object) -> Callable[[BackgroundScheduler], None]:
    def add(scheduler: BackgroundScheduler) -> None:
        scheduler.add_job(
            fires.record,
            "interval",
            seconds=seconds,
            start_date=ANCHOR,
            id="tick",
            replace_existing=True,
            **({"misfire_grace_time": 30, "coalesce": False, "max_instances": 10} | job),
        )

    return add


def blocking_job(release: threading.Event, started: threading.Event) -> Callable[..., None]:
    def add(scheduler: BackgroundScheduler) -> None:
        def slow() -> None:
            started.set()
            release.wait(10)

        scheduler.add_job(
            slow,
            "interval",
            hours=1,
            id="slow",
            name="slow",
            next_run_time=datetime.now(timezone.utc),
        )

    return add


def test_drain_waits_for_a_running_job_and_no_longer(settings: Settings, start_clock: StartClock):
    """The drain ack comes right after the running job ends, long before the deadline, and the
    schedule is persisted (handed back)."""
    release, started = threading.Event(), threading.Event()
    start_clock(blocking_job(release, started))
    assert started.wait(10)
    threading.Timer(0.5, release.set).start()
    outcome = ControlClient(settings).send(Command.DRAIN, args={"deadline": 20}, timeout=25)
    assert outcome.ok
    data = outcome.replies[0].data
    assert outcome.replies[0].state == "drained"
    assert data["finished"] == ["slow"]
    assert data["still_running"] == []
    assert 0.3 < data["duration_s"] < 5
    assert [entry.split("@")[0] for entry in data["handed_back"]] == ["slow"]


def test_drain_deadline_report_names_the_running_job(settings: Settings, start_clock: StartClock):
    """At the deadline the drain reply fails and names the job still running, with its age."""
    release, started = threading.Event(), threading.Event()
    start_clock(blocking_job(release, started))
    assert started.wait(10)
    outcome = ControlClient(settings).send(Command.DRAIN, args={"deadline": 0.3}, timeout=10)
    release.set()
    reply = outcome.replies[0]
    assert not reply.ok
    assert reply.error is not None
    assert "slow" in reply.error
    [running] = reply.data["still_running"]
    assert running["id"] == "slow"
    assert running["name"] == "slow"
    assert running["running_s"] > 0


def test_resume_fires_the_runs_due_during_the_drain_once(start_clock: StartClock):
    """Drained for several intervals, then resumed: the runs due meanwhile fire, none twice."""
    fires = Fires()
    clock = start_clock(ticking(fires, 0.1))
    wait_for(lambda: len(fires) >= 5)
    report = clock.drain(5)
    assert report.complete
    drained_at = len(fires)
    resume_after = time.time() + 0.5
    wait_for(lambda: time.time() >= resume_after)  # the clock stays drained meanwhile
    assert len(fires) == drained_at
    clock.resume()
    wait_for(lambda: len(fires) >= drained_at + 10)
    duplicates, missed = fires.grid(100)
    assert duplicates == []
    assert missed == []


def test_restore_after_a_gap_fires_each_missed_run_once(start_clock: StartClock):
    """A new clock started after a gap fires every run that fell due in it, once each."""
    fires = Fires()
    old = start_clock(ticking(fires, 0.1))
    wait_for(lambda: len(fires) >= 5)
    old.drain(5)
    old.close()
    last = max(fires.counts) / 1000
    wait_for(lambda: time.time() >= last + 0.8)  # the deploy window: 8 runs fall due
    start_clock(ticking(fires, 0.1), release="v2")
    wait_for(lambda: max(fires.counts) / 1000 > last + 1.2)
    duplicates, missed = fires.grid(100)
    assert duplicates == []
    assert missed == []


def test_restore_after_a_gap_coalesces_missed_runs_into_one(start_clock: StartClock):
    """With ``coalesce=True`` the runs that fell due in the gap fire once, as the latest of them."""
    fires = Fires()
    old = start_clock(ticking(fires, 0.1, coalesce=True))
    wait_for(lambda: len(fires) >= 5)
    old.drain(5)
    old.close()
    last = round(max(fires.counts))
    wait_for(lambda: time.time() >= last / 1000 + 0.8)
    restarted = time.time()
    start_clock(ticking(fires, 0.1, coalesce=True), release="v2")
    held_ms = time.time() * 1000  # the restore (at the lease's acquisition) is done by now
    wait_for(lambda: max(fires.counts) / 1000 > restarted + 0.5)
    duplicates, missed = fires.grid(100)
    assert duplicates == []
    since_restart = sorted(ms for ms in fires.counts if last < ms <= held_ms)
    assert since_restart, "the gap's latest run fired on restore"
    # One run stands for the whole gap: the latest before the restore, none of the earlier.
    assert since_restart[0] >= restarted * 1000 - 100
    assert len(missed) >= 7


def test_restore_keeps_persisted_next_run_times_and_drops_removed_jobs(
    settings: Settings,
    start_clock: StartClock,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
):
    """A job re-added with ``replace_existing=True`` keeps its persisted next run time; a job the
    code no longer has is dropped from Redis with a log line."""
    planned = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=5, seconds=7)
    nxt = f"drainctl:{{{settings.app}}}:clock:next"
    redis_client.hset(nxt, mapping={"report": round(planned.timestamp() * 1000), "gone": 1})
    redis_client.expire(nxt, 60)

    def add(scheduler: BackgroundScheduler) -> None:
        scheduler.add_job(print, "interval", hours=1, id="report", replace_existing=True)

    caplog.set_level(logging.INFO, logger="drainctl")
    clock = start_clock(add)
    wait_for(lambda: clock.scheduler.get_job("report").next_run_time == planned)
    assert "'gone' of the persisted schedule no longer exists: dropped" in caplog.text
    assert redis_client.hkeys(nxt) == [b"report"]


def test_sigterm_from_a_worker_thread_is_refused_before_anything_starts(settings: Settings):
    """``run(sigterm=True)`` off the main thread fails with a clear ConfigError, starts nothing."""
    scheduler = BackgroundScheduler(timezone=timezone.utc)
    clock = ClockAdapter(scheduler)
    listener = ControlListener(adapter=clock, settings=settings.replace(process_type="clock"))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            clock.run(listener)
        except ConfigError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    [error] = errors
    assert "main thread" in str(error)
    assert "install_sigterm" in str(error)
    assert not scheduler.running
    assert clock.listener is None


def test_runs_due_while_drained_fire_on_resume_despite_a_short_job_grace(
    start_clock: StartClock,
):
    """Drained for 2 s with APScheduler's default 1 s misfire grace: the deploy grace fires every
    run due meanwhile once on resume, none reported missed."""
    fires = Fires()
    clock = start_clock(ticking(fires, 0.2, misfire_grace_time=1, max_instances=30))
    wait_for(lambda: len(fires) >= 3)
    assert clock.drain(5).complete
    drained_at = len(fires)
    resume_after = time.time() + 2.0
    wait_for(lambda: time.time() >= resume_after)
    clock.resume()
    wait_for(lambda: len(fires) >= drained_at + 14)
    duplicates, missed = fires.grid(200)
    assert duplicates == []
    assert missed == []
    assert clock.status()["missed"] == 0


def test_runs_due_between_the_old_drain_and_the_new_start_fire_once(start_clock: StartClock):
    """The old clock drains and exits, the new one starts 2 s later: the gap's runs fire once each
    though the job's grace is 1 s (the old clock's drain time is left in Redis)."""
    fires = Fires()
    old = start_clock(ticking(fires, 0.2, misfire_grace_time=1, max_instances=30))
    wait_for(lambda: len(fires) >= 3)
    old.drain(5)
    old.close()
    last = max(fires.counts) / 1000
    wait_for(lambda: time.time() >= last + 2.0)
    new = start_clock(ticking(fires, 0.2, misfire_grace_time=1, max_instances=30), release="v2")
    wait_for(lambda: max(fires.counts) / 1000 > last + 2.6)
    duplicates, missed = fires.grid(200)
    assert duplicates == []
    assert missed == []
    assert new.status()["missed"] == 0


def test_runs_missed_without_a_drain_keep_the_job_grace(start_clock: StartClock):
    """An old clock that stops without draining (as if killed) leaves no deploy grace: the new
    clock reports the runs older than the job's 1 s grace as missed and does not run them."""
    fires = Fires()
    old = start_clock(ticking(fires, 0.2, misfire_grace_time=1, max_instances=30))
    wait_for(lambda: len(fires) >= 3)
    old.close()
    last = max(fires.counts) / 1000
    wait_for(lambda: time.time() >= last + 2.5)
    new = start_clock(ticking(fires, 0.2, misfire_grace_time=1, max_instances=30), release="v2")
    wait_for(lambda: new.status()["missed"] > 0 and max(fires.counts) / 1000 > last + 3.0)
    duplicates, missed = fires.grid(200)
    assert duplicates == []
    assert len(missed) >= 3
    assert new.status()["next_due"] is not None


def test_the_registry_shows_a_lease_change_at_once_not_a_beat_later(settings: Settings) -> None:
    """A clock that takes the lease (the first, then a newer release's) shows ``held`` in the
    registry well before its next heartbeat: ``drainctl status`` and a deploy's verify read it."""
    slow_beats = settings.replace(heartbeat_interval=30.0)
    registry = ControlClient(slow_beats)
    clocks = []
    try:
        for release in ("v1", "v2"):
            clock = ClockAdapter(BackgroundScheduler(timezone=timezone.utc))
            listener = ControlListener(
                adapter=clock, settings=slow_beats.replace(process_type="clock", release=release)
            )
            clock.run(listener, sigterm=False)
            clocks.append(clock)
            wait_for(functools.partial(_holds, clock), timeout=10)
            wait_for(functools.partial(_shown_holding, registry, release), timeout=2)
    finally:
        for clock in clocks:
            clock.close()
        registry.client.close()


def _holds(clock: ClockAdapter) -> bool:
    return bool(clock.status()["lease"] == "held")


def _shown_holding(registry: ControlClient, release: str) -> bool:
    return any(
        r.doc["release"] == release and r.doc.get("lease") == "held" for r in registry.live()
    )
