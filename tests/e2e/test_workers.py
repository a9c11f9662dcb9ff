"""RQ, Celery and hand-written workers in real subprocesses against a real redis-server.

Every job writes the ledger (``examples/demoapp/ledger.py``) when it completes, so "every job ran
exactly once" is counted, not assumed.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from drainctl.config import Settings
from drainctl.protocol import Command
from examples.demoapp import ledger
from examples.demoapp.producer import durations, enqueue
from tests.workers import WorkerProcess, runs, wait_for

pytestmark = pytest.mark.slow
KINDS = ["rq", "celery", "loop"]


@pytest.fixture
def spawn(settings: Settings, tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    """Start worker processes; kill leftovers and show their logs when the test failed."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


def start(spawned: list[WorkerProcess], kind: str, settings: Settings, tmp: Path, *extra: str,
          **env: str) -> WorkerProcess:  # fmt: skip
    worker = WorkerProcess(kind, settings, tmp, **env)
    spawned.append(worker)
    return worker.start(*extra)


def push(settings: Settings, kind: str, times: list[float], **kwargs: int) -> list[str]:
    client = redis.Redis.from_url(settings.redis_url)
    try:
        return enqueue(client, settings.require_app(), kind, times, queue=settings.app, **kwargs)
    finally:
        client.close()


def completed(redis_client: redis.Redis, app: str, ids: list[str]) -> bool:
    done = runs(redis_client, app)
    return all(done.get(job_id, 0) >= 1 for job_id in ids)


@pytest.mark.parametrize("kind", KINDS)
def test_drained_worker_takes_no_job_until_resumed(
    kind: str, settings: Settings, tmp_path: Path, spawn: list[WorkerProcess],
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    """After a drain is acknowledged no job is taken, even one pushed later; resume takes it."""
    worker = start(spawn, kind, settings, tmp_path)
    outcome = worker.send(Command.DRAIN, deadline=1.0)
    assert outcome.ok, outcome.replies
    assert outcome.replies[0].state == "drained"
    ids = push(settings, kind, [0.01])
    seconds, _ = redis_client.time()
    # Two more heartbeats from the drained worker: it is alive, and still has not run the job.
    wait_for(lambda: worker.doc()["beat_at"] > seconds + 2 * settings.heartbeat_interval, 10)
    assert runs(redis_client, settings.require_app()) == {}
    assert worker.send(Command.RESUME).ok
    wait_for(lambda: completed(redis_client, settings.require_app(), ids), 20, "the job")
    assert runs(redis_client, settings.require_app()) == {ids[0]: 1}


@pytest.mark.parametrize("kind", ["rq", "celery"])
def test_job_longer_than_deadline_is_requeued_and_runs_once(
    kind: str, settings: Settings, tmp_path: Path, spawn: list[WorkerProcess],
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    """At the deadline the running job is stopped and handed back; after resume it runs once."""
    worker = start(spawn, kind, settings, tmp_path)
    long_id, short_id = push(settings, kind, [3.0, 0.01])
    wait_for(lambda: worker.doc()["in_flight"] >= 1, 10, "the long job to start")
    wait_for(lambda: completed(redis_client, settings.require_app(), [short_id]) or kind == "rq")
    outcome = worker.send(Command.DRAIN, deadline=0.3)
    assert outcome.ok, [(r.error, r.data) for r in outcome.replies]
    assert outcome.replies[0].data["handed_back"] == [long_id]
    if kind == "rq":
        from rq import Queue

        # Back at the front of its queue, ahead of the job enqueued after it.
        assert Queue(settings.require_app(), connection=redis_client).job_ids[0] == long_id
    assert long_id not in runs(redis_client, settings.require_app())
    assert worker.send(Command.RESUME).ok
    wait_for(lambda: completed(redis_client, settings.require_app(), [long_id, short_id]), 20)
    assert runs(redis_client, settings.require_app()) == {long_id: 1, short_id: 1}


@pytest.mark.parametrize("kind", KINDS)
def test_every_job_runs_exactly_once_across_drains_and_sigterm(
    kind: str, settings: Settings, tmp_path: Path, spawn: list[WorkerProcess],
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    """200 jobs (10 ms to 2 s), drain/resume cycles, SIGTERM mid-job, a new worker: all once."""
    app = settings.require_app()
    ids = push(settings, kind, durations(200, long_every=50))
    first = start(spawn, kind, settings, tmp_path)
    for cycle in range(1, 4):
        wait_for(lambda c=cycle: len(runs(redis_client, app)) >= 25 * c, 60, "progress")
        outcome = first.send(Command.DRAIN, deadline=0.3)
        # A hand-written loop cannot stop a job at the deadline: its drain may be incomplete.
        assert outcome.ok or (kind == "loop" and outcome.replies[0].data["still_running"])
        assert first.send(Command.RESUME).ok
    wait_for(lambda: first.doc()["in_flight"] >= 1, 30, "a job in progress")
    first.signal(signal.SIGTERM)
    assert first.wait(30) == 0
    assert len(runs(redis_client, app)) < len(ids)
    start(spawn, kind, settings, tmp_path)
    wait_for(lambda: completed(redis_client, app, ids), 120, "all jobs")
    report = ledger.audit(redis_client, app)
    assert report.exactly_once, (report.missing[:5], report.duplicated)


@pytest.mark.parametrize("kind", KINDS)
def test_failing_job_is_counted_and_the_worker_keeps_going(
    kind: str, settings: Settings, tmp_path: Path, spawn: list[WorkerProcess],
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    """An unhandled job error is logged and counted in the heartbeat; the next job still runs."""
    worker = start(spawn, kind, settings, tmp_path)
    ids = push(settings, kind, [0.01] * 3, fail_every=2)
    wait_for(lambda: completed(redis_client, settings.require_app(), ids), 20, "the jobs")
    doc = wait_for(lambda: (d := worker.doc())["errors"] == 1 and d, 10, "the error count")
    assert ids[1] in doc["last_error"]["job"]
    assert doc["jobs_done"] == 3
    assert worker.process is not None
    assert worker.process.poll() is None
    assert "failed on purpose" in worker.log_text()


@pytest.mark.parametrize("kind", KINDS)
def test_worker_recycles_after_max_jobs_and_loses_nothing(
    kind: str, settings: Settings, tmp_path: Path, spawn: list[WorkerProcess],
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    """With max_jobs the worker drains itself and exits 0; a fresh worker runs the rest once."""
    app = settings.require_app()
    ids = push(settings, kind, [0.3] * 8)
    extra = ("--max-jobs", "3") if kind == "rq" else ()
    first = start(spawn, kind, settings, tmp_path, *extra, DEMO_MAX_JOBS="3")
    assert first.wait(30) == 0
    assert 3 <= len(runs(redis_client, app)) < len(ids)
    assert "retiring" in first.log_text()
    start(spawn, kind, settings, tmp_path)
    wait_for(lambda: completed(redis_client, app, ids), 30, "all jobs")
    assert ledger.audit(redis_client, app).exactly_once


def test_sigkilled_loop_worker_job_is_recovered(
    settings: Settings, tmp_path: Path, spawn: list[WorkerProcess], redis_client: redis.Redis
) -> None:
    """A hand-written worker killed mid-job leaves the job in its processing list; the next
    worker recovers it once the dead worker's heartbeat has expired, and it runs once."""
    app = settings.require_app()
    ids = push(settings, "loop", [2.0])
    first = start(spawn, "loop", settings, tmp_path)
    wait_for(lambda: first.doc()["in_flight"] == 1, 10, "the job to start")
    first.signal(signal.SIGKILL)
    first.wait(10)
    start(spawn, "loop", settings, tmp_path)
    wait_for(lambda: completed(redis_client, app, ids), 30, "the recovered job")
    assert runs(redis_client, app) == {ids[0]: 1}
