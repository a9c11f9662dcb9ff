"""Job functions for the RQ demo worker: sleep for a while, then record the run in the ledger."""

from __future__ import annotations

import time

from examples.demoapp import ledger


class JobError(Exception):
    """What a deliberately failing job raises."""


def ledger_job(job_id: str, duration: float, fail: bool = False) -> str:
    """Work for ``duration`` seconds, record the run, then fail if asked to (after recording)."""
    time.sleep(duration)
    ledger.record_run(job_id)
    if fail:
        raise JobError(f"job {job_id} failed on purpose")
    return job_id


def timed_job(stamp_key: str, duration: float) -> None:
    """For the benchmark: stamp the start, work ``duration`` seconds, stamp the end (Unix time)."""
    client = ledger.client()
    client.set(f"{stamp_key}:start", time.time(), ex=600)
    time.sleep(duration)
    client.set(f"{stamp_key}:end", time.time(), ex=600)
