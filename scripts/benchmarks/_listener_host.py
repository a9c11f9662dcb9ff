"""A process hosting K ControlListeners, for benchmarks that need listeners in other processes.

Prints one JSON line on stdout once every listener is registered (pid, instance ids, native ids
of the listener threads), then runs until its stdin closes or it gets SIGTERM, and stops its
listeners cleanly. With ``--jobs`` each listener gets a JobsAdapter and a work loop taking job
durations from the Redis list ``{app}:bench-jobs``; each finished job's wall-clock end time is
pushed to ``{app}:bench-ended`` so the requester can tell drain overhead from job time.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

import redis

from drainctl import ControlListener, JobsAdapter, Settings


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--app", required=True)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--process-type", default="worker")
    parser.add_argument("--dyno", default=None)
    parser.add_argument("--heartbeat-interval", type=float, default=None)
    parser.add_argument("--block-timeout", type=float, default=None)
    parser.add_argument("--jobs", action="store_true", help="run a JobsAdapter work loop")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the serve threads into FILE")
    return parser.parse_args()


def work_loop(jobs: JobsAdapter, url: str, app: str, stopping: threading.Event) -> None:
    """Take job durations from a list; run each as a job in flight; report when it ended."""
    client = redis.Redis.from_url(url)
    queue, ended = f"{app}:bench-jobs", f"{app}:bench-ended"
    while not stopping.is_set():
        if not jobs.wait_until_accepting(timeout=0.2):
            continue
        popped = client.blpop([queue], timeout=0.2)
        if popped is None:
            continue
        job = jobs.start("bench-job")
        if job is None:
            client.lpush(queue, popped[1])
            continue
        with job:
            time.sleep(float(popped[1]))
            end = time.time()
        client.rpush(ended, end)
        client.expire(ended, 600)
    client.close()


def profiled(listener: ControlListener, profile: cProfile.Profile) -> None:
    """Run the listener's serve thread under ``profile`` (the thread that answers requests)."""
    serve = listener._serve

    def run() -> None:
        profile.enable()
        try:
            serve()
        finally:
            profile.disable()

    listener._serve = run  # type: ignore[method-assign]


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main() -> None:
    args = parse()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    settings = Settings(redis_url=args.redis_url, app=args.app, dyno=args.dyno).replace(
        heartbeat_interval=args.heartbeat_interval, block_timeout=args.block_timeout
    )
    stopping = threading.Event()
    listeners, loops = [], []
    # Thread CPU time, not wall time: a serve thread spends most of its wall time blocked.
    profile = cProfile.Profile(time.thread_time) if args.profile else None
    for _ in range(args.count):
        adapter = JobsAdapter() if args.jobs else None
        listener = ControlListener(
            process_type=args.process_type, adapter=adapter, settings=settings
        )
        if profile is not None:
            profiled(listener, profile)
        listener.start()
        listeners.append(listener)
        if adapter is not None:
            loop = threading.Thread(
                target=work_loop, args=(adapter, args.redis_url, args.app, stopping), daemon=True
            )
            loop.start()
            loops.append(loop)
    ready: dict[str, Any] = {
        "pid": os.getpid(),
        "instances": [listener.identity.instance_id for listener in listeners],
        "threads": [t.native_id for t in threading.enumerate() if t.name.startswith("drainctl-")],
    }
    print(json.dumps(ready), flush=True)
    signal.signal(signal.SIGTERM, _terminate)
    # Idle until the parent closes our stdin: the main thread does nothing meanwhile.
    with contextlib.suppress(SystemExit):
        sys.stdin.read()
    stopping.set()
    for listener in listeners:
        listener.stop()
    for loop in loops:
        loop.join(2)
    if profile is not None:
        profile.dump_stats(args.profile)


if __name__ == "__main__":
    main()
