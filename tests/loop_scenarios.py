"""Faults a live hand-written worker must survive with its job, for the tests and the trials script.

Each scenario pushes one job, starts an owner that takes it and an idle peer (which looks for gone
workers' jobs after every idle pop, each second) as real ``examples/demoapp/worker.py``
processes, applies the fault for more than five heartbeats (0.5 s each) and returns how often the
job completed and whether the peer recovered it.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from examples.demoapp import ledger
from examples.demoapp.worker import queue_name
from tests.polling import wait_for
from tests.tcp_proxy import TcpProxy
from tests.workers import Harness, WorkerProcess

# Five heartbeats of the test settings (0.5 s): the owner's registry entry expires after three.
SILENCE = 2.5


class ScenarioInvalid(Exception):
    """The fault did not last long enough to test anything (e.g. a GIL hold cut short)."""


@dataclass
class Outcome:
    """What one scenario saw: completed runs of the job, and whether a peer recovered it."""

    runs: int
    recovered_by_peer: bool
    owner: WorkerProcess


def push_job(harness: Harness, duration: float, gil: float = 0.0, wait_for: str = "") -> str:
    """Enqueue one demo loop job; its id."""
    job_id = f"job-{time.monotonic_ns()}"
    ledger.record_enqueued(harness.redis, harness.app, [job_id])
    payload = {"id": job_id, "duration": duration, "gil": gil, "wait_for": wait_for}
    harness.redis.rpush(queue_name(harness.app), json.dumps(payload))
    return job_id


def start_owner(harness: Harness, **env: str) -> WorkerProcess:
    """A worker that has taken the only job (it sits in its processing list)."""
    owner = harness.start("loop", **env)
    wait_for(lambda: harness.redis.llen(queue_name(harness.app)) == 0, 10, "the job to be taken")
    return owner


def outlive_the_heartbeat(harness: Harness, owner: WorkerProcess) -> None:
    """Wait until the owner's registry entry is gone, then through the peer's recover passes."""
    wait_for(lambda: owner.record() is None, 10, "the owner's heartbeat to expire")
    time.sleep(SILENCE)  # the peer looks for gone workers each second meanwhile
    if owner.record() is not None:  # the fault must last through those looks
        raise ScenarioInvalid("the owner's heartbeat came back too early: nothing was proved")


def finish(harness: Harness, job_id: str, owner: WorkerProcess, peer: WorkerProcess) -> Outcome:
    """Wait for the job to complete, then report."""
    harness.wait_completed([job_id], 30)
    recovered = "recovered" in peer.log_text()
    return Outcome(harness.runs().get(job_id, 0), recovered, owner)


def gil_hold(harness: Harness) -> Outcome:
    """The job holds the GIL for about four times the silence: no thread of the owner runs."""
    go = f"demo:{harness.app}:go"
    job_id = push_job(harness, duration=0.1, gil=4 * SILENCE, wait_for=go)
    owner = start_owner(harness)
    peer = harness.start("loop")
    harness.redis.rpush(go, "go")  # the hold starts only now, with the peer looking
    outlive_the_heartbeat(harness, owner)
    return finish(harness, job_id, owner, peer)


def sigstop(harness: Harness) -> Outcome:
    """The owner is stopped mid-job, then continued."""
    job_id = push_job(harness, duration=1.0)
    owner = start_owner(harness)
    owner.signal(signal.SIGSTOP)
    try:
        peer = harness.start("loop")
        outlive_the_heartbeat(harness, owner)
    finally:
        owner.signal(signal.SIGCONT)
    return finish(harness, job_id, owner, peer)


def redis_cut(harness: Harness) -> Outcome:
    """The owner's link to Redis (and its helper's) is down mid-job, shorter than recover_after."""
    with proxied(harness) as proxy:
        job_id = push_job(harness, duration=3 * SILENCE)
        owner = start_owner(harness, REDIS_URL=proxy.url)
        peer = harness.start("loop")
        proxy.cut()
        try:
            outlive_the_heartbeat(harness, owner)
        finally:
            proxy.restore()
        return finish(harness, job_id, owner, peer)


def sigkill(harness: Harness) -> Outcome:
    """The owner is killed mid-job: the peer recovers the job once its heartbeat expires."""
    job_id = push_job(harness, duration=1.0)
    owner = start_owner(harness)
    owner.signal(signal.SIGKILL)
    owner.wait(10)
    peer = harness.start("loop")
    return finish(harness, job_id, owner, peer)


@contextlib.contextmanager
def proxied(harness: Harness) -> Iterator[TcpProxy]:
    """A TcpProxy to the harness's Redis, closed on exit."""
    proxy = TcpProxy(harness.redis.connection_pool.connection_kwargs["port"])
    try:
        yield proxy
    finally:
        proxy.close()


SCENARIOS: dict[str, Callable[[Harness], Outcome]] = {
    "gil_hold": gil_hold,
    "sigstop": sigstop,
    "redis_cut": redis_cut,
    "sigkill": sigkill,
}
