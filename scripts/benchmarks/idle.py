"""Idle cost of one listener: Redis commands per second, connections held, CPU used.

One listener with default settings (heartbeat every 5 s, blocking read returning every 30 s) in
its own process, on a redis-server nobody else uses, watched for 60 s (15 s with --quick):
commands from ``INFO commandstats`` deltas (our own INFO and CLIENT calls excluded),
connections from ``CLIENT LIST``, CPU from the listener threads' times (psutil).
"""

from __future__ import annotations

import time
from typing import Any

import psutil
import redis
from _common import ListenerFleet, new_app, pick, progress, redis_server, standalone

# Our own probes, not the listener's.
MONITOR_COMMANDS = {"info", "client|list", "client|id", "client|setinfo", "hello", "ping"}
# Past the first heartbeat, which opens the second connection (connection set-up is not idle).
SETTLE_S = 6.0


def commands(client: redis.Redis) -> dict[str, int]:
    """Calls per command so far, without the monitor's own."""
    stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in stats.items()
        if name.removeprefix("cmdstat_") not in MONITOR_COMMANDS
    }


def thread_cpu(pid: int, native_ids: set[int]) -> float:
    """CPU seconds (user + system) of the given threads of ``pid``."""
    return sum(
        t.user_time + t.system_time for t in psutil.Process(pid).threads() if t.id in native_ids
    )


def run() -> dict[str, Any]:
    """Measure one idle listener over the window."""
    window = pick(60.0, 15.0)
    with redis_server() as server:
        monitor = redis.Redis.from_url(server.url, protocol=2)
        with ListenerFleet(server.url, new_app(), 1, 1) as fleet:
            ready = fleet.ready[0]
            pid, threads = int(ready["pid"]), set(ready["threads"])
            process = psutil.Process(pid)
            time.sleep(SETTLE_S)
            progress(f"watching one idle listener for {window:.0f} s")
            before, cpu_before = commands(monitor), thread_cpu(pid, threads)
            proc_before = sum(process.cpu_times()[:2])
            time.sleep(window)
            after, cpu_after = commands(monitor), thread_cpu(pid, threads)
            proc_after = sum(process.cpu_times()[:2])
            own = monitor.client_id()
            held = [c for c in monitor.client_list() if int(c["id"]) != own]
        monitor.close()
    delta = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    per_s = sum(delta.values()) / window
    result = {
        "window_s": window,
        "commands": delta,
        "commands_per_s": round(per_s, 3),
        "connections": len(held),
        "listener_threads_cpu_s": round(cpu_after - cpu_before, 3),
        "process_cpu_s": round(proc_after - proc_before, 3),
        "targets": {
            "at_most_0.25_commands_per_s": {"value": round(per_s, 3), "met": per_s <= 0.25},
            "at_most_2_connections": {"value": len(held), "met": len(held) <= 2},
        },
    }
    progress(f"idle: {per_s:.3f} commands/s, {len(held)} connections")
    return result


if __name__ == "__main__":
    standalone(run)
