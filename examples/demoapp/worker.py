"""A hand-written worker, drainable with drainctl: a reliable Redis list queue plus JobsAdapter.

Each payload is a JSON job ``{"id": ..., "duration": ..., "fail": ...}`` pushed by
``producer.py``. Nothing is lost: a payload moves atomically into this worker's processing list
when popped, leaves it only when the job is done, goes back to the front of the queue when a
drain began meanwhile, and is recovered by the next worker if this one is SIGKILLed.

Environment: ``DRAINCTL_APP``, ``REDIS_URL`` (or ``DRAINCTL_REDIS_URL``), ``DYNO`` or
``DRAINCTL_PROCESS_TYPE``; ``DEMO_MAX_JOBS`` and ``DEMO_MAX_MEMORY_MB`` for recycling,
``DEMO_GRACE`` and ``DEMO_MARGIN`` (seconds from SIGTERM to SIGKILL, default 30, and the part
of it kept after the drain, default 5), ``DEMO_POP_TIMEOUT`` (idle wait between recoveries,
default 5 s), ``DEMO_RECOVER_AFTER`` (``ReliableQueue``'s ``recover_after``, default 30 s).

A job may also carry ``"gil": seconds``: it then holds the GIL that long before its sleep (a long
C call, like a catastrophic regex), so the worker's own heartbeat thread cannot run; and
``"wait_for": key``: it first waits (up to a minute) for an item in that Redis list.

    python -m examples.demoapp.worker
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

import redis

from drainctl.adapters.jobs import JobsAdapter
from drainctl.adapters.reliable_queue import RECOVER_AFTER, ReliableQueue
from drainctl.config import Settings
from drainctl.listener import ControlListener
from drainctl.shutdown import drain_on_sigterm
from examples.demoapp import ledger

logger = logging.getLogger("examples.demoapp.worker")

# How long one blocking pop waits when idle (a drain interrupts it at once anyway); after each
# idle wait the worker looks for dead workers' jobs.
POP_TIMEOUT = float(os.environ.get("DEMO_POP_TIMEOUT", "5"))


def queue_name(app: str) -> str:
    """The demo's job queue."""
    return f"demo:{app}:jobs"


def run(job: dict[str, object]) -> None:
    """The work itself: record the start, hold the GIL, sleep, record the run, maybe fail."""
    ledger.record_start(str(job["id"]))
    if job.get("wait_for"):  # a test's go-ahead: a list to pop from first
        ledger.client().blpop([str(job["wait_for"])], timeout=60)
    hold_gil(float(job.get("gil", 0.0)))  # type: ignore[arg-type]
    time.sleep(float(job.get("duration", 0.0)))  # type: ignore[arg-type]
    ledger.record_run(str(job["id"]))
    if job.get("fail"):
        raise RuntimeError(f"job {job['id']} failed on purpose")


def hold_gil(seconds: float) -> None:
    """Keep the GIL for about ``seconds``: ``sum`` over a range loops in C and never yields it."""
    if seconds <= 0:
        return
    sample = 5_000_000  # about 0.05 s; the fastest of three, as other processes may preempt us
    started = time.perf_counter()
    fastest = float("inf")
    for _ in range(3):
        begun = time.perf_counter()
        sum(range(sample))
        fastest = min(fastest, time.perf_counter() - begun)
    sum(range(int(sample / max(fastest, 1e-6) * seconds)))
    logger.info("held the GIL for %.1f s", time.perf_counter() - started)


def _env_number(name: str) -> float | None:
    raw = os.environ.get(name)
    return float(raw) if raw else None


def main() -> int:
    """Work until SIGTERM (drain, then exit 0) or recycling (exit 0)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = Settings.from_env()
    app = settings.require_app()
    max_jobs = _env_number("DEMO_MAX_JOBS")
    jobs = JobsAdapter(
        wakeup=lambda: queue.interrupt(),  # noqa: PLW0108  # the queue is created below
        max_jobs=int(max_jobs) if max_jobs else None,
        max_memory_mb=_env_number("DEMO_MAX_MEMORY_MB"),
    )
    listener = ControlListener(adapter=jobs, settings=settings)
    client = redis.Redis.from_url(settings.redis_url)
    queue = ReliableQueue(
        client,
        queue_name(app),
        app=app,
        consumer=listener.identity.instance_id,
        gate=lambda: jobs.accepting,
        recover_after=_env_number("DEMO_RECOVER_AFTER") or RECOVER_AFTER,
        on_lost=lambda _payload: jobs.count("jobs_lost"),
    )
    with listener:
        drain_on_sigterm(
            listener,
            grace=_env_number("DEMO_GRACE") or 30.0,
            margin=_env_number("DEMO_MARGIN") or 5.0,
        )
        queue.recover()
        while jobs.retired is None:
            if not jobs.wait_until_accepting(timeout=POP_TIMEOUT):
                continue
            payload = queue.pop(POP_TIMEOUT)
            if payload is None:
                queue.recover()  # idle: a worker may have died meanwhile
                continue
            work(jobs, queue, payload)
        # Retired (recycling): nothing is in flight, our processing list is empty.
        queue.close()
    return 0


def work(jobs: JobsAdapter, queue: ReliableQueue, payload: bytes) -> None:
    """Run one payload under the adapter, or hand it back if a drain began."""
    job = json.loads(payload)
    running = jobs.start(str(job["id"]))
    if running is None:
        queue.hand_back(payload)
        return
    with running:  # errors are logged with their traceback and counted, never raised
        try:
            run(job)
        finally:
            # Acknowledged while still counted in flight: a drain that ends right after the job
            # cannot let the process exit with a done job still in the processing list. False
            # (logged, counted as jobs_lost) if the job was recovered from us meanwhile.
            queue.ack(payload)


if __name__ == "__main__":
    sys.exit(main())
