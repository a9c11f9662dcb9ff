"""Benchmark: how much a worker's drain adds to the job it waits for.

A real RQ worker and a real Celery worker (subprocesses, private redis-server) each run a job of
0.25 s; a drain is sent while it runs. Overhead = acknowledgement time - the moment the job
ended (stamped by the job itself), i.e. request-to-ack minus the job's remaining time. The anchor
is a ping round trip to the same worker, measured in the same run. Target: median under 20 ms.

    .venv/bin/python scripts/benchmarks/worker_drain.py
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402  # after the path setup, like every import below

from drainctl.config import Settings  # noqa: E402
from drainctl.protocol import Command  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402
from tests.workers import WorkerProcess, wait_for  # noqa: E402

SAMPLES = 15
JOB_SECONDS = 0.25
TARGET_MS = 20.0


def _enqueue(kind: str, client: redis.Redis, app: str, stamp: str) -> None:
    if kind == "rq":
        from rq import Queue

        Queue(app, connection=client).enqueue(
            "examples.demoapp.tasks.timed_job", stamp, JOB_SECONDS
        )
        return
    from examples.demoapp.celery_app import app as celery
    from examples.demoapp.celery_app import timed_task

    kwargs = client.get_connection_kwargs()
    url = f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs['db']}"
    with celery.connection_for_write(url) as connection:
        timed_task.apply_async((stamp, JOB_SECONDS), queue=app, connection=connection)


def measure(kind: str, server: RedisServer, log_dir: Path) -> dict[str, Any]:
    """Drain overhead and ping round trip for one worker kind, in milliseconds."""
    app = f"bench-{kind}-{int(time.time())}"
    settings = Settings(redis_url=server.url, app=app, heartbeat_interval=0.5)
    client = redis.Redis.from_url(server.url)
    worker = WorkerProcess(kind, settings, log_dir).start()
    overheads, idle, pings = [], [], []
    try:
        for i in range(SAMPLES):
            stamp = f"demo:{app}:bench:{i}"
            _enqueue(kind, client, app, stamp)
            wait_for(lambda s=stamp: client.exists(f"{s}:start"), 30, "the job to start")
            sent = time.time()
            outcome = worker.send(Command.DRAIN, deadline=10)
            assert outcome.ok, outcome.replies
            acked = sent + next(iter(outcome.latency.values()))
            overheads.append((acked - float(client.get(f"{stamp}:end") or 0)) * 1000)
            idle.append(next(iter(worker.send(Command.DRAIN, deadline=10).latency.values())) * 1000)
            assert worker.send(Command.RESUME).ok
            pings.append(next(iter(worker.send(Command.PING).latency.values())) * 1000)
    finally:
        worker.stop()
        client.close()
    return {
        "drain_overhead_ms_median": round(statistics.median(overheads), 2),
        "drain_overhead_ms_max": round(max(overheads), 2),
        "idle_drain_ms_median": round(statistics.median(idle), 2),
        "ping_ms_median": round(statistics.median(pings), 2),
        "samples": SAMPLES,
    }


def run() -> dict[str, Any]:
    """Both worker kinds on one private redis-server."""
    server = RedisServer().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results = {kind: measure(kind, server, Path(tmp)) for kind in ("rq", "celery")}
    finally:
        server.cleanup()
    return {
        **results,
        "job_seconds": JOB_SECONDS,
        "target_ms": TARGET_MS,
        "meets_target": all(r["drain_overhead_ms_median"] < TARGET_MS for r in results.values()),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
