"""The demo's Celery app: one task that writes the ledger, drainable through drainctl.

Run a worker with ``celery -A examples.demoapp.celery_app worker`` (``DRAINCTL_APP``,
``REDIS_URL`` and ``DRAINCTL_PROCESS_TYPE`` or ``DYNO`` from the environment).
"""

from __future__ import annotations

import os

from celery import Celery

from drainctl.adapters.base import WorkerOptions
from drainctl.adapters.celery import install
from examples.demoapp import ledger, tasks

app = Celery("demoapp", broker=ledger.redis_url())
app.conf.update(
    # What drainctl needs to drain without losing a task (see the README).
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    task_default_queue=ledger.queue_for("celery"),
    # A visibility timeout that fits the longest task (drainctl warns otherwise): the task of a
    # worker killed outright runs again that long after it started, swept for every 10 s.
    task_time_limit=int(os.environ.get("DEMO_TASK_TIME_LIMIT", "120")),
    broker_transport_options={
        "visibility_timeout": float(os.environ.get("DEMO_VISIBILITY_TIMEOUT", "180")),
        "unacked_restore_interval": int(os.environ.get("DEMO_RESTORE_INTERVAL", "10")),
        "unacked_restore_throttle": 1,
    },
)
install(
    app,
    WorkerOptions(
        max_jobs=int(os.environ["DEMO_MAX_JOBS"]) if os.environ.get("DEMO_MAX_JOBS") else None,
        grace=float(os.environ.get("DEMO_GRACE", "30")),
        margin=float(os.environ.get("DEMO_MARGIN", "5")),
    ),
)


@app.task(name="demo.ledger_task")
def ledger_task(job_id: str, duration: float, fail: bool = False) -> str:
    """The same work as the RQ demo job."""
    return tasks.ledger_job(job_id, duration, fail)


@app.task(name="demo.timed_task")
def timed_task(stamp_key: str, duration: float) -> None:
    """The benchmark's job (see ``tasks.timed_job``)."""
    tasks.timed_job(stamp_key, duration)
