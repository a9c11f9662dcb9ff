"""The demo's ledger: each job records the runs it completes, so exactly-once can be counted.

``demo:{app}:ledger:enqueued`` (hash job id -> 1) is written by the producer, ``demo:{app}:ledger:
runs`` (hash job id -> completed runs) by the jobs themselves, with ``HINCRBY`` as their last step.
A job killed half-way records nothing; a job that ran twice records 2. Both keys expire after a day.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache

import redis

LEDGER_TTL = 24 * 3600


def app_name() -> str:
    """The app the demo runs as (``DRAINCTL_APP``)."""
    return os.environ.get("DRAINCTL_APP", "demo")


def redis_url() -> str:
    """Where the demo's Redis is (``DRAINCTL_REDIS_URL``, else ``REDIS_URL``)."""
    return os.environ.get("DRAINCTL_REDIS_URL") or os.environ.get(
        "REDIS_URL", "redis://localhost:6379/0"
    )


@cache
def client() -> redis.Redis:
    """One client per process (a forked RQ horse gets fresh connections from the pool)."""
    return redis.Redis.from_url(redis_url())


def runs_key(app: str) -> str:
    """Hash of job id -> completed runs."""
    return f"demo:{app}:ledger:runs"


def enqueued_key(app: str) -> str:
    """Hash of job id -> 1 for every job the producer enqueued."""
    return f"demo:{app}:ledger:enqueued"


def record_run(job_id: str, app: str | None = None) -> None:
    """Count one completed run of ``job_id``."""
    key = runs_key(app or app_name())
    pipe = client().pipeline(transaction=False)
    pipe.hincrby(key, job_id, 1)
    pipe.expire(key, LEDGER_TTL)
    pipe.execute()


def record_enqueued(client: redis.Redis, app: str, job_ids: list[str]) -> None:
    """Note jobs as enqueued."""
    key = enqueued_key(app)
    pipe = client.pipeline(transaction=False)
    pipe.hset(key, mapping=dict.fromkeys(job_ids, 1))
    pipe.expire(key, LEDGER_TTL)
    pipe.execute()


@dataclass
class Audit:
    """Enqueued versus completed runs."""

    enqueued: int = 0
    once: int = 0
    missing: list[str] = field(default_factory=list)
    duplicated: dict[str, int] = field(default_factory=dict)

    @property
    def exactly_once(self) -> bool:
        """Every enqueued job completed exactly once."""
        return not self.missing and not self.duplicated and self.once == self.enqueued


def audit(client: redis.Redis, app: str) -> Audit:
    """Compare the two hashes."""
    enqueued = {k.decode() for k in client.hkeys(enqueued_key(app))}
    runs = {k.decode(): int(v) for k, v in client.hgetall(runs_key(app)).items()}
    return Audit(
        enqueued=len(enqueued),
        once=sum(1 for job_id in enqueued if runs.get(job_id) == 1),
        missing=sorted(enqueued - runs.keys()),
        duplicated={job_id: n for job_id, n in runs.items() if n != 1},
    )


DEFAULT_QUEUES = {"rq": "default", "celery": "celery"}


def queue_for(kind: str) -> str:
    """The RQ or Celery queue the demo uses: ``DEMO_QUEUE``, else the framework's default."""
    return os.environ.get("DEMO_QUEUE") or DEFAULT_QUEUES.get(kind, "default")
