"""Enqueue demo jobs of varied durations for the RQ, Celery or hand-written worker.

Every job id is recorded in ``demo:{app}:ledger:enqueued`` so that ``ledger.audit`` can check
that each ran exactly once.

    python -m examples.demoapp.producer --kind loop --count 200
"""

from __future__ import annotations

import argparse
import json
import random
import uuid
from collections.abc import Callable
from contextlib import ExitStack

import redis

from examples.demoapp import ledger

KINDS = ("loop", "rq", "celery")


def durations(count: int, *, seed: int = 0, long_every: int = 40) -> list[float]:
    """Mostly 10-50 ms jobs, one in ``long_every`` between 0.5 and 2 s."""
    rng = random.Random(seed)
    return [
        rng.uniform(0.5, 2.0) if i % long_every == long_every - 1 else rng.uniform(0.01, 0.05)
        for i in range(count)
    ]


Push = Callable[[str, float, bool], None]


def _loop(client: redis.Redis, app: str, queue: str, stack: ExitStack) -> Push:
    from examples.demoapp.worker import queue_name

    def push(job_id: str, duration: float, fail: bool) -> None:
        payload = {"id": job_id, "duration": duration, "fail": fail}
        client.rpush(queue_name(app), json.dumps(payload))

    return push


def _rq(client: redis.Redis, app: str, queue: str, stack: ExitStack) -> Push:
    from rq import Queue

    rq_queue = Queue(queue, connection=client)

    def push(job_id: str, duration: float, fail: bool) -> None:
        rq_queue.enqueue("examples.demoapp.tasks.ledger_job", job_id, duration, fail, job_id=job_id)

    return push


def _celery(client: redis.Redis, app: str, queue: str, stack: ExitStack) -> Push:
    from examples.demoapp.celery_app import app as celery
    from examples.demoapp.celery_app import ledger_task

    kwargs = client.get_connection_kwargs()
    url = f"redis://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs['db']}"
    connection = stack.enter_context(celery.connection_for_write(url))

    def push(job_id: str, duration: float, fail: bool) -> None:
        ledger_task.apply_async(
            (job_id, duration, fail), task_id=job_id, queue=queue, connection=connection
        )

    return push


PUSHERS = {"loop": _loop, "rq": _rq, "celery": _celery}


def enqueue(
    client: redis.Redis,
    app: str,
    kind: str,
    times: list[float],
    *,
    queue: str | None = None,
    fail_every: int = 0,
) -> list[str]:
    """Enqueue one job per duration; returns their ids (recorded in the ledger first).

    ``queue`` is the RQ or Celery queue (default ``DEMO_QUEUE``, else the framework's default).
    """
    ids = [f"{kind}-{uuid.uuid4().hex[:8]}-{i}" for i in range(len(times))]
    ledger.record_enqueued(client, app, ids)
    with ExitStack() as stack:
        push = PUSHERS[kind](client, app, queue or ledger.queue_for(kind), stack)
        for i, (job_id, duration) in enumerate(zip(ids, times, strict=True)):
            push(job_id, duration, bool(fail_every) and i % fail_every == fail_every - 1)
    return ids


def main() -> None:
    """Parse arguments and enqueue."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=KINDS, default="loop")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    client = redis.Redis.from_url(ledger.redis_url())
    ids = enqueue(client, ledger.app_name(), args.kind, durations(args.count, seed=args.seed))
    print(f"enqueued {len(ids)} {args.kind} jobs for app {ledger.app_name()}")


if __name__ == "__main__":
    main()
