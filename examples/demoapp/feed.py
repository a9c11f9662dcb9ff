"""The demo's ``producer`` process: enqueues a steady stream of jobs of varied lengths.

Procfile (commands run from the repository root)::

    producer: python -m examples.demoapp.feed

Every ``DEMO_FEED_SECONDS`` (default 0.4) it enqueues one job for the hand-written worker
through ``producer.enqueue`` (so each id lands in the ledger first): mostly 50-500 ms, one in
eight between 2 and 6 s, longer than the platform's grace in the demo. It embeds a listener
too, so ``drainctl drain -t producer`` pauses the stream (the demo does this before counting).
"""

from __future__ import annotations

import os
import random
import time

import redis

from drainctl import ControlListener, JobsAdapter, Settings
from drainctl.shutdown import drain_on_sigterm
from examples.demoapp.producer import enqueue

LONG_EVERY = 8


def duration(rng: random.Random, n: int) -> float:
    """The n-th job's length: a long one every LONG_EVERY jobs, short ones otherwise."""
    return rng.uniform(2.0, 6.0) if n % LONG_EVERY == LONG_EVERY - 1 else rng.uniform(0.05, 0.5)


def main() -> None:
    """Enqueue until SIGTERM, pausing while drained."""
    settings = Settings.from_env()
    app = settings.require_app()
    client = redis.Redis.from_url(settings.redis_url)
    every = float(os.environ.get("DEMO_FEED_SECONDS", "0.4"))
    rng = random.Random(os.getpid())
    feed = JobsAdapter()
    listener = ControlListener(adapter=feed, settings=settings).start()
    drain_on_sigterm(listener, grace=float(os.environ.get("DEMO_GRACE", "30")), margin=0.5)
    n = 0
    while True:
        if not feed.wait_until_accepting(timeout=1.0):
            continue
        job = feed.start("enqueue")
        if job is None:
            continue
        with job:
            enqueue(client, app, "loop", [duration(rng, n)])
        n += 1
        time.sleep(every)


if __name__ == "__main__":
    main()
