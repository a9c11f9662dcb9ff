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
from examples.demoapp.producer import durations
from tests.workers import Harness, wait_for

pytestmark = pytest.mark.slow
KINDS = ["rq", "celery", "loop"]


@pytest.fixture
def harness(settings: Settings, redis_client: redis.Redis, tmp_path: Path) -> Iterator[Harness]:
    """The test's app, with worker processes killed at the end."""
    harness = Harness(settings, redis_client, tmp_path)
    yield harness
    harness.close()


@pytest.mark.parametrize("kind", KINDS)
def test_drained_worker_takes_no_job_until_resumed(kind: str, harness: Harness) -> None:
    """After a drain is acknowledged no job is taken, even one pushed later; resume takes it."""
    worker = harness.start(kind)
    outcome = worker.send(Command.DRAIN, deadline=1.0)
    assert outcome.ok, outcome.replies
    assert outcome.replies[0].state == "drained"
    ids = harness.push(kind, [0.01])
    seconds, _ = harness.redis.time()
    # Two more heartbeats from the drained worker: it is alive, and still has not run the job.
    interval = harness.settings.heartbeat_interval
    wait_for(lambda: worker.doc()["beat_at"] > seconds + 2 * interval, 10, "two heartbeats")
    assert harness.runs() == {}
    assert worker.send(Command.RESUME).ok
    harness.wait_completed(ids)
    assert harness.runs() == {ids[0]: 1}


@pytest.mark.parametrize("kind", ["rq", "celery"])
def test_job_longer_than_deadline_is_requeued_and_runs_once(kind: str, harness: Harness) -> None:
    """At the deadline the running job is stopped and handed back; after resume it runs once."""
    worker = harness.start(kind)
    long_id, short_id = harness.push(kind, [3.0, 0.01])
    wait_for(lambda: worker.doc()["in_flight"] >= 1, 10, "the long job to start")
    if kind == "celery":  # two pool processes: the short job runs alongside the long one
        harness.wait_completed([short_id])
    outcome = worker.send(Command.DRAIN, deadline=0.3)
    assert outcome.ok, [(r.error, r.data) for r in outcome.replies]
    assert outcome.replies[0].data["handed_back"] == [long_id]
    if kind == "rq":
        from rq import Queue

        # Back at the front of its queue, ahead of the job enqueued after it.
        assert Queue(harness.app, connection=harness.redis).job_ids[0] == long_id
    assert long_id not in harness.runs()
    assert worker.send(Command.RESUME).ok
    harness.wait_completed([long_id, short_id])
    assert harness.runs() == {long_id: 1, short_id: 1}


@pytest.mark.parametrize("kind", KINDS)
def test_every_job_runs_exactly_once_across_drains_and_sigterm(kind: str, harness: Harness) -> None:
    """200 jobs (10 ms to 2 s), drain/resume cycles, SIGTERM to every process of the worker
    mid-job, then a new worker: every job completes exactly once."""
    ids = harness.push(kind, durations(200, long_every=50))
    first = harness.start(kind)
    for cycle in range(1, 4):
        wait_for(lambda c=cycle: len(harness.runs()) >= 25 * c, 60, "progress")
        outcome = first.send(Command.DRAIN, deadline=0.3)
        # A hand-written loop cannot stop a job at the deadline: its drain may be incomplete.
        assert outcome.ok or (kind == "loop" and outcome.replies[0].data["still_running"])
        assert first.send(Command.RESUME).ok
    wait_for(lambda: first.doc()["in_flight"] >= 1, 30, "a job in progress")
    first.signal_all(signal.SIGTERM)  # like Heroku: the worker and its children
    assert first.wait(30) == 0
    assert len(harness.runs()) < len(ids)
    harness.start(kind)
    harness.wait_completed(ids, 120)
    report = ledger.audit(harness.redis, harness.app)
    assert report.exactly_once, (report.missing[:5], report.duplicated)


@pytest.mark.parametrize("kind", KINDS)
def test_failing_job_is_counted_and_the_worker_keeps_going(kind: str, harness: Harness) -> None:
    """An unhandled job error is logged and counted in the heartbeat; the next job still runs."""
    worker = harness.start(kind)
    ids = harness.push(kind, [0.01] * 3, fail_every=2)
    harness.wait_completed(ids)
    # The ledger is written before the job's end is counted: wait for a heartbeat after it.
    doc = wait_for(lambda: (d := worker.doc())["jobs_done"] == 3 and d, 10, "the job count")
    assert doc["errors"] == 1
    assert ids[1] in doc["last_error"]["job"]
    assert worker.process is not None
    assert worker.process.poll() is None
    assert "failed on purpose" in worker.log_text()


@pytest.mark.parametrize("kind", KINDS)
def test_worker_recycles_after_max_jobs_and_loses_nothing(kind: str, harness: Harness) -> None:
    """With max_jobs the worker drains itself and exits 0; a fresh worker runs the rest once."""
    ids = harness.push(kind, [0.3] * 8)
    extra = ("--max-jobs", "3") if kind == "rq" else ()
    first = harness.start(kind, *extra, DEMO_MAX_JOBS="3")
    assert first.wait(30) == 0
    assert 3 <= len(harness.runs()) < len(ids)
    assert "retiring" in first.log_text()
    harness.start(kind)
    harness.wait_completed(ids)
    assert ledger.audit(harness.redis, harness.app).exactly_once


def test_sigkilled_loop_worker_job_is_recovered(harness: Harness) -> None:
    """A hand-written worker killed mid-job leaves the job in its processing list; the next
    worker recovers it once the dead worker's heartbeat has expired, and it runs once."""
    ids = harness.push("loop", [2.0])
    first = harness.start("loop")
    wait_for(lambda: first.doc()["in_flight"] == 1, 10, "the job to start")
    first.signal(signal.SIGKILL)
    first.wait(10)
    harness.start("loop")
    harness.wait_completed(ids)
    assert harness.runs() == {ids[0]: 1}


@pytest.mark.parametrize("kind", ["rq", "celery"])
def test_sigkilled_framework_worker_leaves_its_job_on_record(kind: str, harness: Harness) -> None:
    """RQ and Celery do not rerun the job of a worker killed with all its processes (as Heroku
    does) at once, but keep it on record as the README describes: RQ in its started-job
    registry (failed or retried when the job's heartbeat expires), Celery as an unacknowledged
    message that kombu restores after the visibility timeout."""
    (job_id,) = harness.push(kind, [2.0])
    worker = harness.start(kind)
    wait_for(lambda: worker.doc()["in_flight"] == 1, 10, "the job to start")
    worker.signal_all(signal.SIGKILL)
    worker.wait(10)
    assert harness.runs() == {}
    if kind == "rq":
        from rq.registry import StartedJobRegistry

        registry = StartedJobRegistry(harness.app, connection=harness.redis)
        assert job_id in registry.get_job_ids()
    else:
        unacked = harness.redis.hvals("unacked")
        assert any(job_id.encode() in message for message in unacked)


def test_celery_countdown_task_coming_due_while_drained_is_handed_back(harness: Harness) -> None:
    """A task the worker holds for its countdown does not start while drained: it goes back to
    the queue when due, and runs once after resume."""
    from examples.demoapp.celery_app import app as celery
    from examples.demoapp.celery_app import ledger_task

    worker = harness.start("celery")
    job_id = f"eta-{harness.app}"
    ids = [job_id]
    ledger.record_enqueued(harness.redis, harness.app, ids)
    with celery.connection_for_write(harness.settings.redis_url) as connection:
        ledger_task.apply_async(
            (job_id, 0.01), task_id=job_id, countdown=1, queue=harness.app, connection=connection
        )
    # The worker took the message and holds it until its countdown ends.
    wait_for(lambda: harness.redis.llen(harness.app) == 0, 10, "the worker to take the task")
    assert worker.send(Command.DRAIN, deadline=1.0).ok
    wait_for(lambda: harness.redis.llen(harness.app) == 1, 10, "the task to be handed back")
    assert harness.runs() == {}
    assert worker.send(Command.RESUME).ok
    harness.wait_completed(ids)
    assert harness.runs() == {job_id: 1}
