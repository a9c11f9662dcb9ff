"""A Celery app for the beat tests: a fast interval entry, a crontab entry and a ledger task.

Configured from the environment by ``tests/beats.py``: ``REDIS_URL`` (broker and ledger),
``BEAT_APP`` (the drainctl app, also naming the queue and ledger), ``BEAT_TICK`` (seconds between
runs of ``tick``), ``BEAT_CATCH_UP``, ``BEAT_SEND_DELAY`` (seconds each send of ``tick`` takes
before it publishes, a slow broker). The ledger task counts each (entry, due time) it runs.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery import Celery, signals
from celery.schedules import crontab

from drainctl.adapters.celery_beat import install_beat

APP = os.environ.get("BEAT_APP", "beat")
QUEUE = f"beatq-{APP}"

app = Celery("beatapp", broker=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    task_default_queue=QUEUE,
    worker_hijack_root_logger=False,
    beat_schedule={
        "tick": {
            "task": "beat.ledger",
            "schedule": float(os.environ.get("BEAT_TICK", "0.2")),
            "args": ("tick",),
            "catch_up": os.environ.get("BEAT_CATCH_UP", "each"),
        },
        "minutely": {
            "task": "beat.ledger",
            "schedule": crontab(),
            "args": ("minutely",),
            "options": {"priority": 3},
            "catch_up": "each",
        },
    },
)
install_beat(app)
SEND_DELAY = float(os.environ.get("BEAT_SEND_DELAY", "0"))


@signals.before_task_publish.connect
def slow_send(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """A slow broker: each ``tick`` send pauses, logged, before it publishes."""
    if SEND_DELAY and (headers or {}).get("drainctl_due_ms"):
        print("publishing...", flush=True)
        time.sleep(SEND_DELAY)


@app.task(name="beat.ledger", bind=True)
def ledger(self: Any, entry: str) -> None:
    """Count this run of ``entry`` by its due time (the header the drainctl beat adds)."""
    due = self.request.get("drainctl_due_ms") or (self.request.headers or {}).get("drainctl_due_ms")
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.hincrby(f"beatledger:{APP}", f"{entry}@{due}", 1)
    client.expire(f"beatledger:{APP}", 600)
