"""Idle cost of one listener: Redis commands per second, connections held, CPU used.

One listener with default settings (heartbeat every 5 s, blocking read returning every 30 s) in
its own process, on a redis-server nobody else uses, watched for 60 s (10 s with --quick):
commands from ``INFO commandstats`` deltas (our own INFO and CLIENT calls excluded),
connections held by the process (psutil), CPU from the listener threads' times (psutil).
The anchor, over the same window on a second redis-server: one Celery worker (solo pool) with
Celery's default settings.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import psutil
import redis
from _celery import CeleryWorkers
from _common import (
    ListenerFleet,
    commandstats,
    cpu_seconds,
    new_app,
    pick,
    progress,
    ratio,
    redis_server,
    standalone,
)

# Our own probes, not the listener's.
MONITOR_COMMANDS = {"info", "client|list", "client|id", "client|setinfo", "hello", "ping"}
# Past the first heartbeat, which opens the second connection (connection set-up is not idle).
SETTLE_S = 6.0


def thread_cpu(pid: int, native_ids: set[int]) -> float:
    """CPU seconds (user + system) of the given threads of ``pid``."""
    return sum(
        t.user_time + t.system_time for t in psutil.Process(pid).threads() if t.id in native_ids
    )


def connections(pid: int, port: int) -> int:
    """TCP connections process ``pid`` holds to the Redis on ``port``."""
    held = psutil.Process(pid).net_connections(kind="tcp")
    return sum(1 for c in held if c.raddr and c.raddr.port == port)


def figures(monitor: redis.Redis, before: dict[str, int], window: float) -> dict[str, Any]:
    """Commands per second since ``before``, by command and in total."""
    after = commandstats(monitor, MONITOR_COMMANDS)
    delta = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    return {"commands": delta, "commands_per_s": round(sum(delta.values()) / window, 3)}


def run() -> dict[str, Any]:
    """One idle listener and, as the anchor, one idle Celery worker, over the same window."""
    window = pick(60.0, 10.0)
    with contextlib.ExitStack() as stack:
        ours, theirs = (stack.enter_context(redis_server()) for _ in range(2))
        fleet = stack.enter_context(ListenerFleet(ours.url, new_app(), 1, 1))
        worker = stack.enter_context(CeleryWorkers(theirs.url, 1, lean=False))
        monitors = [redis.Redis.from_url(s.url, protocol=2) for s in (ours, theirs)]
        pid, threads = int(fleet.ready[0]["pid"]), set(fleet.ready[0]["threads"])
        worker_pid = worker.pids[0]
        time.sleep(SETTLE_S)
        progress(f"watching an idle listener and an idle Celery worker for {window:.0f} s")
        before = [commandstats(m, MONITOR_COMMANDS) for m in monitors]
        cpu = (thread_cpu(pid, threads), cpu_seconds([pid]), cpu_seconds([worker_pid]))
        time.sleep(window)
        listener = figures(monitors[0], before[0], window)
        listener["connections"] = connections(pid, ours.port)
        listener["listener_threads_cpu_s"] = round(thread_cpu(pid, threads) - cpu[0], 3)
        listener["process_cpu_s"] = round(cpu_seconds([pid]) - cpu[1], 3)
        celery = figures(monitors[1], before[1], window)
        celery["connections"] = connections(worker_pid, theirs.port)
        celery["process_cpu_s"] = round(cpu_seconds([worker_pid]) - cpu[2], 3)
        for monitor in monitors:
            monitor.close()
    rate, held = listener["commands_per_s"], listener["connections"]
    progress(f"idle: {rate} commands/s and {held} connections (Celery: {celery['commands_per_s']})")
    return {
        "window_s": window,
        "drainctl_listener": listener,
        "celery_worker_defaults": celery,
        "ratios": {
            "celery_commands_per_s_vs_listener": ratio(celery["commands_per_s"], rate),
        },
        "targets": {
            "at_most_0.25_commands_per_s": {"value": rate, "met": rate <= 0.25},
            "at_most_2_connections": {"value": held, "met": held <= 2},
        },
    }


if __name__ == "__main__":
    standalone(run)
