"""A live hand-written worker keeps its job: a GIL-holding job, a SIGSTOP or a cut link silence its
heartbeat, but not its liveness helper, so an idle peer never recovers (and reruns) the job.

The scenarios live in ``tests/loop_scenarios.py``; ``scripts/loop_liveness_trials.py`` repeats
them for the duplicate and miss counts.
"""

from __future__ import annotations

import pytest

from tests import loop_scenarios
from tests.loop_scenarios import SILENCE, proxied, push_job, start_owner
from tests.workers import Harness, WorkerProcess, wait_for

pytestmark = pytest.mark.slow


def test_job_holding_the_gil_is_not_taken_by_a_peer(harness: Harness) -> None:
    """A job holding the GIL for more than five heartbeats starves the owner's heartbeat thread;
    its helper process keeps it alive, so the idle peer leaves the job alone and it runs once."""
    outcome = loop_scenarios.gil_hold(harness)
    assert (outcome.runs, outcome.recovered_by_peer) == (1, False)


def test_sigstopped_worker_keeps_its_job(harness: Harness) -> None:
    """A worker stopped mid-job for more than five heartbeats finishes the job after SIGCONT;
    the peer never takes it."""
    outcome = loop_scenarios.sigstop(harness)
    assert (outcome.runs, outcome.recovered_by_peer) == (1, False)


def test_worker_cut_off_from_redis_keeps_its_job(harness: Harness) -> None:
    """A worker whose link to Redis is down for more than five heartbeats (shorter than
    recover_after) finishes its job once the link is back; the peer never takes it."""
    outcome = loop_scenarios.redis_cut(harness)
    assert (outcome.runs, outcome.recovered_by_peer) == (1, False)
    assert "jobs_lost" not in outcome.owner.doc()


def test_sigkilled_worker_job_is_recovered_and_runs_once(harness: Harness) -> None:
    """A worker killed mid-job is gone for good: its helper deletes the liveness key, and the
    peer recovers the job once the heartbeat expires; it runs once."""
    outcome = loop_scenarios.sigkill(harness)
    assert (outcome.runs, outcome.recovered_by_peer) == (1, True)


def lost_count(worker: WorkerProcess) -> int | None:
    """The jobs a worker says were recovered from it, once it is registered again."""
    record = worker.record()
    return None if record is None else record.doc.get("jobs_lost")


def test_worker_cut_off_longer_than_recover_after_learns_it_lost_the_job(
    harness: Harness,
) -> None:
    """Past recover_after a cut-off worker counts as gone: the peer recovers and runs the job,
    and the owner's ack reports that it no longer owned it (jobs_lost in its status). This is
    the one case the README says needs an idempotency key."""
    with proxied(harness) as proxy:
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
