"""Round trip of ``ping`` to N live processes: drainctl against Celery's remote control.

drainctl: N listeners spread over separate processes (1, 4, 50 and 200), timed through the
library (``ControlClient.send``) and through the CLI (``drainctl ping``, a fresh process each).
Celery, on the same redis-server, against N real workers (solo pool): ``app.control.ping`` with
``limit=N`` (returns once N replies are in), with its defaults (waits out its 1 s timeout), and
the ``celery inspect ping`` CLI. Ratios compare medians measured in this run.
"""

from __future__ import annotations

import os
from typing import Any

from _celery import CeleryWorkers, control_app, worker_env
from _common import (
    BIN,
    ListenerFleet,
    latency,
    median_ms,
    new_app,
    pick,
    progress,
    ratio,
    redis_server,
    standalone,
    time_command,
    timed,
    timed_with_cpu,
    wait_until,
)

from drainctl import Command, ControlClient, Settings

# listeners -> (processes, listeners per process)
LAYOUTS = {1: (1, 1), 4: (4, 1), 50: (5, 10), 200: (10, 20)}


def drainctl_ping(url: str, redis_pid: int, listeners: int) -> dict[str, Any]:
    """p50/p99 of the library call and the median of the CLI, to ``listeners`` listeners."""
    hosts, per_host = LAYOUTS[listeners]
    app = new_app()
    with ListenerFleet(url, app, hosts, per_host) as fleet:
        client = ControlClient(Settings(redis_url=url, app=app))
        wait_until(lambda: len(client.live()) == listeners, 30, f"{listeners} listeners")

        def ping() -> None:
            outcome = client.send(Command.PING, timeout=5)
            if not outcome.ok or len(outcome.replies) != listeners:
                raise RuntimeError(f"ping reached {len(outcome.replies)} of {listeners}")

        requests = pick(200, 200 if listeners <= 4 else 50)
        groups = {"requester": [os.getpid()], "listeners": fleet.pids, "redis": [redis_pid]}
        samples, cpu = timed_with_cpu(ping, requests, groups, warmup=10)
        library = latency(samples)
        argv = [str(BIN / "drainctl"), "--redis-url", url, "--app", app, "ping"]
        cli = median_ms(time_command(argv, pick(10, 3)))
        client.client.close()
    progress(f"drainctl ping to {listeners}: p50 {library['p50_ms']} ms, CLI {cli['median_ms']}")
    return {
        "listeners": listeners,
        "processes": hosts,
        "library": library,
        "cpu_per_request": cpu,
        "cli": cli,
    }


def celery_ping(url: str, redis_pid: int, workers: int) -> dict[str, Any]:
    """Celery's control.ping with limit=N and with defaults, and ``celery inspect ping``."""
    with CeleryWorkers(url, workers) as fleet:
        control = control_app(url).control

        def ping_limit() -> None:
            replies = control.ping(limit=workers, timeout=1.0)
            if len(replies) != workers:
                raise RuntimeError(f"celery ping reached {len(replies)} of {workers}")

        groups = {"requester": [os.getpid()], "workers": fleet.pids, "redis": [redis_pid]}
        samples, cpu = timed_with_cpu(ping_limit, pick(200, 50), groups, warmup=5)
        limited = latency(samples)
        default = median_ms(timed(control.ping, pick(5, 2)))
        argv = [str(BIN / "celery"), "-A", "_celery_app", "inspect", "ping"]
        cli = median_ms(time_command(argv, pick(3, 1), env=worker_env(url), warmup=0))
    progress(f"celery ping to {workers}: limit p50 {limited['p50_ms']} ms")
    return {
        "workers": workers,
        "start_s": round(fleet.start_s, 1),
        "control_ping_limit": limited,
        "cpu_per_request": cpu,
        "control_ping_default": default,
        "inspect_ping_cli": cli,
    }


def compare(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """How many times faster drainctl is, median against median."""
    lib = ours["library"]["p50_ms"]
    return {
        "vs_control_ping_limit": ratio(theirs["control_ping_limit"]["p50_ms"], lib),
        "vs_control_ping_default": ratio(theirs["control_ping_default"]["median_ms"], lib),
        "cli_vs_inspect_ping_cli": ratio(
            theirs["inspect_ping_cli"]["median_ms"], ours["cli"]["median_ms"]
        ),
    }


def run() -> dict[str, Any]:
    """Every figure, ratios per N, and the targets of issues 2 and 7."""
    celery_sizes = pick([1, 4, 50], [1, 4])
    with redis_server() as server:
        pid = server.process.pid if server.process else 0
        ours = {str(n): drainctl_ping(server.url, pid, n) for n in LAYOUTS}
        theirs = {str(n): celery_ping(server.url, pid, n) for n in celery_sizes}
    ratios = {n: compare(ours[n], theirs[n]) for n in theirs}
    p50_4 = ours["4"]["library"]["p50_ms"]
    result = {
        "drainctl": ours,
        "celery": theirs,
        "ratios": ratios,
        "targets": {
            "p50_to_4_processes_under_1ms": {"value_ms": p50_4, "met": p50_4 < 1.0},
            "vs_celery_limit_4_at_least_5x": _target(ratios["4"]["vs_control_ping_limit"], 5),
            "vs_celery_default_4_at_least_500x": _target(
                ratios["4"]["vs_control_ping_default"], 500
            ),
        },
    }
    if 50 not in celery_sizes:
        result["celery"]["50"] = {"skipped": "quick mode: 50 Celery workers take ~1 min to start"}
    return result


def _target(value: float | None, at_least: float) -> dict[str, Any]:
    return {"ratio": value, "met": value is not None and value >= at_least}


if __name__ == "__main__":
    standalone(run)
