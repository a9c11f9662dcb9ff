"""The demo app's worker as it was before drainctl: a loop over a plain Redis list.

Procfile::

    worker: python -m examples.plainapp.worker

A common hand-written queue: ``BLMOVE`` each payload from ``demo:{app}:jobs`` into one shared
``demo:{app}:processing`` list, ``LREM`` it when done, and when ``worker.1`` starts it moves
whatever is left in ``processing`` back to the queue, since "a worker that crashed left it there".
SIGTERM sets a flag: the job in hand is finished, then the loop ends. Each of these is what a
deploy breaks:

- the start-up recovery assumes the old workers are gone, but on a deploy they overlap with the
  new ones: a job they are still running is run again, and finished twice if it ends in time;
- a job longer than the platform's grace is SIGKILLed half-way (cut off);
- an idle worker is blocked in ``BLMOVE`` with no timeout: SIGTERM's flag is only read once a job
  arrives, so it takes one more job after SIGTERM (the recovered one) and is SIGKILLed with it,
  after the new workers' recovery has run: that job stays in ``processing``, lost.

Payloads are the demo's JSON jobs ``{"id": ..., "duration": ..., "fail": ...}``.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import redis

from examples.demoapp import ledger


def main() -> None:
    """Recover, then work until SIGTERM (after the job in hand)."""
    app = ledger.app_name()
    # No socket timeout (redis-py < 8's default): BLMOVE waits for as long as the queue is empty.
    client = redis.Redis.from_url(ledger.redis_url(), socket_timeout=None)
    queue, processing = f"demo:{app}:jobs", f"demo:{app}:processing"
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    if os.environ.get("DYNO") == "worker.1":
        for payload in reversed(client.lrange(processing, 0, -1)):  # oldest first
            client.lrem(processing, 1, payload)
            client.lpush(queue, payload)
            print(f"put back {json.loads(payload)['id']}", flush=True)
    while not stopping.is_set():
        payload = client.blmove(queue, processing, 0, "LEFT", "LEFT")
        job = json.loads(payload)
        print(f"working on {job['id']}", flush=True)
        ledger.record_start(job["id"], app)
        time.sleep(float(job["duration"]))
        ledger.record_run(job["id"], app)
        client.lrem(processing, 1, payload)
        print(f"done {job['id']}", flush=True)


if __name__ == "__main__":
    main()
