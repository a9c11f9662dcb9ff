"""DrainableWorker behaves like rq.Worker where monitoring and resources are concerned."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
import redis
from rq import Queue

from drainctl.adapters.rq import DrainableWorker
from tests.polling import wait_for
from tests.redis_server import RedisServer


@pytest.fixture
def named(redis_server: RedisServer, app: str) -> Iterator[redis.Redis]:
    """A client whose connections (and the worker's dedicated ones, copied from it) carry a name
    of this test's own: other tests' connections coming and going do not count."""
    client = redis.Redis.from_url(redis_server.url, client_name=f"rqf-{app}")
    yield client
    client.close()


def _clients(client: redis.Redis) -> int:
    name = client.connection_pool.connection_kwargs["client_name"]
    return sum(1 for entry in client.client_list() if entry.get("name") == name)


def closed(client: redis.Redis, count: int) -> None:
    """Until the server lists ``count`` of the test's connections: it drops a closed one a
    moment after the client closed it."""
    wait_for(lambda: _clients(client) == count, 5, f"{count} named connections")


def test_a_dequeue_outside_work_keeps_no_connection(named: redis.Redis, app: str) -> None:
    """Called outside work() (as RQ's tests and tools do), a dequeue closes the interruptible
    pop's connections when it returns; a job still comes out."""
    queue = Queue(f"q-{app}", connection=named)
    worker = DrainableWorker([queue], connection=named)
    before = _clients(named)
    try:
        assert worker.dequeue_job_and_maintain_ttl(timeout=1, max_idle_time=1) is None
        closed(named, before)
        job = queue.enqueue("builtins.print", "x")
        result = worker.dequeue_job_and_maintain_ttl(timeout=1, max_idle_time=1)
        assert result is not None
        assert result[0].id == job.id
        closed(named, before)
    finally:
        queue.delete(delete_jobs=True)
        for key in named.scan_iter(match=f"*q-{app}*"):
            named.delete(key)


def test_a_collected_worker_closes_its_pop_connections(named: redis.Redis, app: str) -> None:
    """A worker dropped without work() (its pop connection open) closes it when collected."""
    worker = DrainableWorker([f"q-{app}"], connection=named)
    before = _clients(named)
    worker.pops.call(lambda client: client.ping())  # opens the dedicated connection
    assert _clients(named) > before
    del worker
    gc.collect()
    closed(named, before)
