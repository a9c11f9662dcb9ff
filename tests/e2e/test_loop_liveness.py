"""A live hand-written worker keeps its job: a GIL-holding job, a SIGSTOP or a cut link silence its
heartbeat, but not its liveness helper, so an idle peer never recovers (and reruns) the job.

Each scenario runs an owner and an idle peer as real processes of ``examples/demoapp/worker.py``
(the peer looks for gone workers' jobs after every idle pop, each second). ``scripts/
loop_liveness_trials.py`` repeats them for the duplicate and miss counts.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from drainctl.config import Settings
from examples.demoapp import ledger
from examples.demoapp.worker import queue_name
from tests.tcp_proxy import TcpProxy
from tests.workers import Harness, WorkerProcess, wait_for

pytestmark = pytest.mark.slow
# Five heartbeats of the test settings (0.5 s): the owner's registry entry expires after three.
SILENCE = 2.5


@pytest.fixture
def harness(settings: Settings, redis_client: redis.Redis, tmp_path: Path) -> Iterator[Harness]:
    """The test's app, with worker processes killed at the end."""
    harness = Harness(settings, redis_client, tmp_path)
    yield harness
    harness.close()


def push_job(harness: Harness, duration: float, gil: float = 0.0) -> str:
    """Enqueue one demo loop job; its id."""
    job_id = f"job-{time.monotonic_ns()}"
    ledger.record_enqueued(harness.redis, harness.app, [job_id])
    payload = {"id": job_id, "duration": duration, "gil": gil}
    harness.redis.rpush(queue_name(harness.app), json.dumps(payload))
    return job_id


def start_owner(harness: Harness, **env: str) -> WorkerProcess:
    """A worker that has taken the only job (it sits in its processing list)."""
    owner = harness.start("loop", **env)
    wait_for(lambda: harness.redis.llen(queue_name(harness.app)) == 0, 10, "the job to be taken")
    return owner


def outlive_the_heartbeat(harness: Harness, owner_pid: int) -> None:
    """Wait until the owner's registry entry is gone, then for the peer's next recover passes."""
    wait_for(
        lambda: all(r.doc.get("pid") != owner_pid for r in harness.workers[0].client.live()),
        10,
        "the owner's heartbeat to expire",
    )
    time.sleep(SILENCE)  # the peer looks for gone workers each second meanwhile


def lost_count(worker: WorkerProcess) -> int | None:
    """The jobs a worker says were recovered from it, once it is registered again."""
    record = worker.record()
    return None if record is None else record.doc.get("jobs_lost")


def assert_ran_once_by_its_owner(harness: Harness, job_id: str, peer: WorkerProcess) -> None:
    harness.wait_completed([job_id], 30)
    assert harness.runs() == {job_id: 1}
    assert "recovered" not in peer.log_text()


def test_job_holding_the_gil_is_not_taken_by_a_peer(harness: Harness) -> None:
    """A job holding the GIL for more than five heartbeats starves the owner's heartbeat thread;
    its helper process keeps it alive, so the idle peer leaves the job alone and it runs once."""
    job_id = push_job(harness, duration=0.1, gil=4 * SILENCE)
    owner = start_owner(harness)
    peer = harness.start("loop")
    outlive_the_heartbeat(harness, owner.pid)
    assert_ran_once_by_its_owner(harness, job_id, peer)


def test_sigstopped_worker_keeps_its_job(harness: Harness) -> None:
    """A worker stopped mid-job for more than five heartbeats finishes the job after SIGCONT;
    the peer never takes it."""
    job_id = push_job(harness, duration=1.0)
    owner = start_owner(harness)
    owner.signal(signal.SIGSTOP)
    try:
        peer = harness.start("loop")
        outlive_the_heartbeat(harness, owner.pid)
    finally:
        owner.signal(signal.SIGCONT)
    assert_ran_once_by_its_owner(harness, job_id, peer)


def test_worker_cut_off_from_redis_keeps_its_job(harness: Harness, redis_server: object) -> None:
    """A worker whose link to Redis is down for more than five heartbeats (shorter than
    recover_after) finishes its job once the link is back; the peer never takes it."""
    proxy = TcpProxy(harness.redis.connection_pool.connection_kwargs["port"])
    try:
        job_id = push_job(harness, duration=3 * SILENCE)
        owner = start_owner(harness, REDIS_URL=proxy.url)
        peer = harness.start("loop")
        proxy.cut()
        try:
            outlive_the_heartbeat(harness, owner.pid)
        finally:
            proxy.restore()
        assert_ran_once_by_its_owner(harness, job_id, peer)
    finally:
        proxy.close()


def test_worker_cut_off_longer_than_recover_after_learns_it_lost_the_job(
    harness: Harness,
) -> None:
    """Past recover_after a cut-off worker counts as gone: the peer recovers and runs the job,
    and the owner's ack reports that it no longer owned it (jobs_lost in its status). This is
    the one case the README says needs an idempotency key."""
    proxy = TcpProxy(harness.redis.connection_pool.connection_kwargs["port"])
    try:
        job_id = push_job(harness, duration=2 * SILENCE)
        owner = start_owner(harness, REDIS_URL=proxy.url, DEMO_RECOVER_AFTER="1")
        peer = harness.start("loop")
        proxy.cut()
        try:
            wait_for(lambda: "recovered" in peer.log_text(), 20, "the peer to recover the job")
        finally:
            proxy.restore()
        wait_for(lambda: lost_count(owner) == 1, 30, "the owner to count the loss")
        wait_for(lambda: harness.runs().get(job_id) == 2, 30, "the peer's run to complete")
        assert harness.runs() == {job_id: 2}
    finally:
        proxy.close()
