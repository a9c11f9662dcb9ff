"""Workers killed outright (SIGKILL, as the out-of-memory killer does) lose nothing: RQ's job is
requeued by the next drainctl worker, Celery's acks-late task comes back after the broker's
visibility timeout. Real worker processes against a real redis-server."""

from __future__ import annotations

import signal

import pytest

from tests.workers import Harness, WorkerProcess, wait_for

pytestmark = pytest.mark.slow


def requeued(worker: WorkerProcess) -> object:
    """The abandoned jobs a worker has requeued, once it reports it."""
    record = worker.record()
    return None if record is None else record.doc.get("jobs_requeued_abandoned")


@pytest.mark.parametrize("whole_dyno", [True, False], ids=["dyno", "worker-only"])
def test_rq_job_of_a_killed_worker_is_requeued_once_and_runs_once(
    harness: Harness, whole_dyno: bool
) -> None:
    """SIGKILL mid-job (the whole dyno, or only the worker process: its horse dies with it):
    the next worker requeues the job at the front once the dead worker's heartbeat expired,
    counts it, and the job runs once."""
    (job_id,) = harness.push("rq", [2.0])
    first = harness.start("rq")
    wait_for(lambda: first.doc()["in_flight"] == 1, 10, "the job to start")
    if whole_dyno:
        first.signal_all(signal.SIGKILL)
    else:
        first.signal(signal.SIGKILL)
    first.wait(10)
    second = harness.start("rq")
    wait_for(lambda: requeued(second) == 1, 20, "the job to be requeued")
    harness.wait_completed([job_id])
    wait_for(lambda: second.doc()["jobs_done"] == 1, 10, "the job to be counted")
    assert harness.runs() == {job_id: 1}


def test_rq_job_abandoned_twice_is_left_to_rq(harness: Harness) -> None:
    """A job requeued once and abandoned again is not requeued a second time: it stays in the
    started registry, where RQ's cleanup fails it as before."""
    from rq.job import Job as RqJob
    from rq.registry import StartedJobRegistry

    (job_id,) = harness.push("rq", [2.0])
    job = RqJob.fetch(job_id, connection=harness.redis)
    job.meta["drainctl_abandoned"] = 1
    job.save_meta()
    first = harness.start("rq")
    wait_for(lambda: first.doc()["in_flight"] == 1, 10, "the job to start")
    first.signal_all(signal.SIGKILL)
    first.wait(10)
    second = harness.start("rq")
    wait_for(lambda: "abandoned a second time" in second.log_text(), 20, "the rescue pass")
    assert harness.runs() == {}
    assert job_id in StartedJobRegistry(harness.app, connection=harness.redis).get_job_ids()
    assert requeued(second) is None


def test_celery_acks_late_task_of_a_killed_worker_runs_once_after_the_visibility_timeout(
    harness: Harness,
) -> None:
    """With a visibility timeout that fits the longest task (here 4 s for 1 s tasks, swept for
    every second), the task of a worker killed outright with all its processes comes back and
    runs once on the next worker; no start-up warning about the timeout."""
    env = {
        "DEMO_VISIBILITY_TIMEOUT": "4",
        "DEMO_TASK_TIME_LIMIT": "2",
        "DEMO_RESTORE_INTERVAL": "1",
    }
    (job_id,) = harness.push("celery", [1.0])
    first = harness.start("celery", **env)
    wait_for(lambda: first.doc()["in_flight"] == 1, 10, "the task to start")
    first.signal_all(signal.SIGKILL)
    first.wait(10)
    second = harness.start("celery", **env)
    harness.wait_completed([job_id], 30)
    wait_for(lambda: second.doc()["jobs_done"] == 1, 10, "the task to be counted")
    assert harness.runs() == {job_id: 1}
    assert "visibility_timeout" not in first.log_text() + second.log_text()
