"""The Celery app the comparison workers run: no tasks, only the remote-control mailbox."""

from __future__ import annotations

import os

from celery import Celery

app = Celery("bench", broker=os.environ["DRAINCTL_BENCH_BROKER"])
app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)
