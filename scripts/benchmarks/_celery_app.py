"""The Celery app the comparison workers run: no tasks, only the remote-control mailbox."""

from __future__ import annotations

import os

from celery import Celery


def make_app(broker_url: str) -> Celery:
    """A Celery app on ``broker_url`` with start-up warnings settled."""
    app = Celery("bench", broker=broker_url)
    app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)
    return app


# What `celery -A _celery_app` (workers and the CLI) loads.
app = make_app(os.environ["DRAINCTL_BENCH_BROKER"])
