"""LoopWorker against a real Redis: ack, failures, hand back, recycling, drains, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from drainctl.adapters.base import WorkerOptions
from drainctl.adapters.loop import LoopWorker
from drainctl.config import Settings
from drainctl.protocol import State
from tests.polling import wait_for
from tests.redis_server import RedisServer


@pytest.fixture
def queue(app: str, redis_client: redis.Redis) -> Iterator[str]:
    """A fresh queue name; its keys are deleted afterwards."""
    name = f"jobs-{app}"
    yield name
    for key in redis_client.scan_iter(match=f"{name}*"):
        redis_client.delete(key)


def _worker(settings: Settings, queue: str, **options: object) -> LoopWorker:
    return LoopWorker(
        queue,
        options=WorkerOptions(settings=settings, **options),  # type: ignore[arg-type]
        pop_timeout=0.2,
        sigterm=False,
    )


def test_failing_job_is_counted_acked_and_loop_goes_on(
    settings: Settings, queue: str, redis_client: redis.Redis
) -> None:
    """A job that raises is logged and counted as last_error, acknowledged, and the next runs."""
    redis_client.rpush(queue, b"bad", b"good")
    worker = _worker(settings, queue, max_jobs=2)
    seen = []
    for job in worker.jobs():
        with job:
            seen.append(job.payload)
            if job.payload == b"bad":
                raise RuntimeError("boom")
    status = worker.adapter.status()
    assert seen == [b"bad", b"good"]
    assert (status["jobs_done"], status["errors"]) == (2, 1)
    assert status["last_error"]["message"] == "boom"
    assert not redis_client.exists(worker.queue.processing)
    assert not redis_client.sismember(f"{queue}:consumers", worker.queue.consumer)


def test_leaving_the_loop_mid_job_hands_it_back(
    settings: Settings, queue: str, redis_client: redis.Redis
) -> None:
    """Without ``with job``, an exception out of the loop puts the payload back at the front."""
    redis_client.rpush(queue, b"first", b"second")
    worker = _worker(settings, queue)

    def loop() -> None:
        for job in worker.jobs():
            raise KeyError(job.payload)

    with pytest.raises(KeyError):
        loop()
    assert redis_client.lrange(queue, 0, -1) == [b"first", b"second"]
    assert not redis_client.exists(worker.queue.processing)


def test_drain_stops_popping_and_resume_takes_work_again(
    settings: Settings, queue: str, redis_client: redis.Redis
) -> None:
    """A drained worker leaves a pushed job in the queue; after resume it runs it."""
    worker = _worker(settings, queue, max_jobs=1)
    seen: list[bytes] = []
    thread = threading.Thread(target=lambda: seen.extend(j.payload for j in worker.jobs()))
    thread.start()
    wait_for(lambda: worker.listener.state is State.RUNNING, what="running")
    report = worker.listener.drain(5.0)
    assert report.complete
    redis_client.rpush(queue, b"later")
    assert worker.adapter.wait_until_accepting(timeout=0.5) is False
    assert redis_client.llen(queue) == 1
    worker.listener.resume()
    thread.join(timeout=10)
    assert seen == [b"later"]


WORKER = """
import sys, time
from drainctl import LoopWorker
for job in LoopWorker(sys.argv[1], pop_timeout=0.2).jobs():
    with job:
        print("started", flush=True)
        time.sleep(1.0)
        print("finished", flush=True)
"""


def test_sigterm_mid_job_finishes_acks_and_exits_0(
    redis_server: RedisServer, app: str, queue: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """SIGTERM while a job runs: the job finishes, is acknowledged, the process exits 0."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DRAINCTL_")},
        "REDIS_URL": redis_server.url,
        "DRAINCTL_APP": app,
        "DYNO": "worker.1",
    }
    redis_client.rpush(queue, b"job", b"next")
    with subprocess.Popen(
        [sys.executable, str(script), queue], env=env, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "started\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert proc.stdout.read() == "finished\n"
    assert redis_client.lrange(queue, 0, -1) == [b"next"]
    assert not list(redis_client.scan_iter(match=f"{queue}:processing:*"))
