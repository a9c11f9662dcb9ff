"""What RQ records on a warm shutdown, recorded by ``DrainableWorker`` on SIGTERM too.

RQ's own SIGTERM handler sets ``_shutdown_requested_date`` and, when a job is running,
``_stop_requested`` and ``shutdown_requested_date`` in the worker's hash, so monitoring (``rq
info``, dashboards) sees the shutdown. The drainctl SIGTERM drain replaces that handler; this
puts the bookkeeping back in front of it. What differs on purpose: a second SIGTERM does not
force RQ's cold stop, the drain decides (the platform's SIGKILL ends it anyway).
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

import redis
from rq import Worker
from rq.utils import now
from rq.worker import WorkerStatus

logger = logging.getLogger(__name__)


def record_warm_shutdown_on_sigterm(worker: Worker, seen: threading.Event) -> None:
    """Wrap the SIGTERM handler installed (the drain) so RQ's warm-shutdown state is set first;
    ``seen`` is set at the first SIGTERM."""
    drain: Any = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if not seen.is_set():
            seen.set()
            _note(worker)
        if callable(drain):
            drain(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


def _note(worker: Worker) -> None:
    # As RQ's request_stop and _shutdown: the date always, the stop request (and the date in the
    # worker's hash) only when a job is running; an idle worker just stops.
    worker._shutdown_requested_date = now()
    busy = worker.get_state() == WorkerStatus.BUSY
    worker._stop_requested = worker._stop_requested or busy
    # Not from the handler itself: it may have interrupted a command holding the pool's lock.
    threading.Thread(
        target=_record, args=(worker, busy), name="drainctl-rq-shutdown", daemon=True
    ).start()


def _record(worker: Worker, busy: bool) -> None:
    worker.handle_warm_shutdown_request()  # type: ignore[no-untyped-call]  # RQ leaves it untyped
    if not busy:
        return
    try:
        worker.set_shutdown_requested_date()  # type: ignore[no-untyped-call]  # likewise
    except redis.RedisError as exc:
        logger.warning("could not record the shutdown request in RQ: %s", exc)
