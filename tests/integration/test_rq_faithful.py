"""DrainableWorker behaves like rq.Worker where monitoring and resources are concerned."""

from __future__ import annotations

import gc

import redis
from rq import Queue

from drainctl.adapters.rq import DrainableWorker


def _clients(client: redis.Redis) -> int:
    return len(client.client_list())


def test_a_dequeue_outside_work_keeps_no_connection(redis_client: redis.Redis, app: str) -> None:
    """Called outside work() (as RQ's tests and tools do), a dequeue closes the interruptible
    pop's connections when it returns; a job still comes out."""
    queue = Queue(f"q-{app}", connection=redis_client)
    worker = DrainableWorker([queue], connection=redis_client)
    before = _clients(redis_client)
    try:
        assert worker.dequeue_job_and_maintain_ttl(timeout=1, max_idle_time=1) is None
        assert _clients(redis_client) == before
        job = queue.enqueue("builtins.print", "x")
        result = worker.dequeue_job_and_maintain_ttl(timeout=1, max_idle_time=1)
        assert result is not None
        assert result[0].id == job.id
        assert _clients(redis_client) == before
    finally:
        queue.delete(delete_jobs=True)
        for key in redis_client.scan_iter(match=f"*q-{app}*"):
            redis_client.delete(key)


def test_a_collected_worker_closes_its_pop_connections(redis_client: redis.Redis, app: str) -> None:
    """A worker dropped without work() (its pop connection open) closes it when collected."""
    worker = DrainableWorker([f"q-{app}"], connection=redis_client)
    before = _clients(redis_client)
    worker.pops.call(lambda client: client.ping())  # opens the dedicated connection
    assert _clients(redis_client) > before
    del worker
    gc.collect()
    assert _clients(redis_client) == before
