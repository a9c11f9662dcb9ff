"""The Celery app of the beat benchmark: one interval entry, drainctl's scheduler or redbeat.

``BENCH_BEAT_SCHEDULER`` is ``drainctl`` or ``redbeat``; ``DRAINCTL_BENCH_BROKER`` the broker
(and redbeat's Redis); ``BENCH_BEAT_APP`` names the queue (and redbeat's key prefix);
``BENCH_BEAT_TICK`` the entry's interval in seconds. No worker consumes: the queue is the ledger.
"""

from __future__ import annotations

import os

from celery import Celery

BROKER = os.environ["DRAINCTL_BENCH_BROKER"]
NAME = os.environ.get("BENCH_BEAT_APP", "beat")
SCHEDULERS = {
    "drainctl": "drainctl.adapters.celery_beat:Scheduler",
    "redbeat": "redbeat.RedBeatScheduler",
    "plain": "celery.beat:PersistentScheduler",
}

app = Celery("beatbench", broker=BROKER)
app.conf.update(
    broker_connection_retry_on_startup=True,
    task_default_queue=f"beatq-{NAME}",
    beat_scheduler=SCHEDULERS[os.environ.get("BENCH_BEAT_SCHEDULER", "drainctl")],
    # redbeat's own settings, left at their defaults but for where its keys live.
    redbeat_redis_url=BROKER,
    redbeat_key_prefix=f"redbeat-{NAME}:",
    beat_schedule={
        "tick": {
            "task": "bench.tick",
            "schedule": float(os.environ.get("BENCH_BEAT_TICK", "0.2")),
            # drainctl's own key: other schedulers reject keys Celery's entries do not know.
            **({"catch_up": "each"} if "drainctl" in app.conf.beat_scheduler else {}),
        }
    },
)
