"""The demo's ledger: each job records the runs it starts and completes, so exactly-once can be
counted.

``demo:{app}:ledger:enqueued`` (hash job id -> 1) is written by the producer,
``demo:{app}:ledger:starts`` (job id -> runs started) and ``demo:{app}:ledger:runs`` (job id ->
completed runs) by the jobs themselves, with ``HINCRBY`` as their first and last step. A job
killed half-way records a start and no run; a job that ran twice records 2. Scheduled runs of the
demo's clocks are counted the same way per ``{job}@{scheduled run time}``: ``ledger:started`` when
a run begins, ``ledger:fires`` when it is done. Every key expires after a day.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache

import redis

LEDGER_TTL = 24 * 3600


def app_name() -> str:
    """The app the demo runs as (``DRAINCTL_APP``, else the platform's ``HEROKU_APP_NAME``)."""
    return os.environ.get("DRAINCTL_APP") or os.environ.get("HEROKU_APP_NAME", "demo")


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


def starts_key(app: str) -> str:
    """Hash of job id -> runs started."""
    return f"demo:{app}:ledger:starts"


def fires_key(app: str) -> str:
    """Hash of scheduled run label -> runs completed."""
    return f"demo:{app}:ledger:fires"


def fire_starts_key(app: str) -> str:
    """Hash of scheduled run label -> runs started (only for runs that take a while)."""
    return f"demo:{app}:ledger:started"


def run_label(job_id: str, when: datetime) -> str:
    """``job@2024-01-01T00:00:00.100+00:00``: the ledger field of one scheduled run."""
    rounded = datetime.fromtimestamp(round(when.timestamp(), 3), timezone.utc)
    return f"{job_id}@{rounded.isoformat(timespec='milliseconds')}"


def count(key: str, field: str) -> None:
    """Add 1 to ``field`` of the hash ``key`` (which expires after a day)."""
    pipe = client().pipeline(transaction=False)
    pipe.hincrby(key, field, 1)
    pipe.expire(key, LEDGER_TTL)
    pipe.execute()


def record_start(job_id: str, app: str | None = None) -> None:
    """Count one started run of ``job_id``."""
    count(starts_key(app or app_name()), job_id)


def record_run(job_id: str, app: str | None = None) -> None:
    """Count one completed run of ``job_id``."""
    count(runs_key(app or app_name()), job_id)


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
