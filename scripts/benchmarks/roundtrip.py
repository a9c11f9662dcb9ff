"""Round trip of ``ping`` to N live processes: drainctl against Celery's remote control.

drainctl: N listeners spread over separate processes (1, 4, 50 and 200), timed through the
library (``ControlClient.send``) and through the CLI (``drainctl ping``, a fresh process each).
Celery, on the same redis-server, against N real workers (solo pool): ``app.control.ping`` with
``limit=N`` (returns once N replies are in), with its defaults (waits out its 1 s timeout), and
the ``celery inspect ping`` CLI. Ratios compare medians measured in this run.

Where both are measured, both fleets run at once and the library calls alternate in blocks, so
drainctl and Celery see the same background load and the ratio holds on a busy machine.
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Any

from _celery import CeleryWorkers, control_app, worker_env
from _common import (
    BIN,
    ListenerFleet,
    Sampler,
    interleave,
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
    wait_until,
)

from drainctl import Command, ControlClient, Settings

# listeners -> (processes, listeners per process)
LAYOUTS = {1: (1, 1), 4: (4, 1), 50: (5, 10), 200: (10, 20)}


def drainctl_ping(client: ControlClient, expected: int) -> None:
    """One ping through the library; every listener must answer."""
    outcome = client.send(Command.PING, timeout=5)
    if not outcome.ok or len(outcome.replies) != expected:
        raise RuntimeError(f"ping reached {len(outcome.replies)} of {expected}")


def celery_ping(control: Any, expected: int) -> None:
    """One ``control.ping(limit=N)``; it returns as soon as N workers answered."""
    replies = control.ping(limit=expected, timeout=1.0)
    if len(replies) != expected:
        raise RuntimeError(f"celery ping reached {len(replies)} of {expected}")


def measure(url: str, redis_pid: int, size: int, with_celery: bool) -> dict[str, Any]:
    """drainctl (and Celery) pinging ``size`` processes, library calls in alternating blocks."""
    hosts, per_host = LAYOUTS[size]
    app = new_app()
    me = [os.getpid()]
    with contextlib.ExitStack() as stack:
        fleet = stack.enter_context(ListenerFleet(url, app, hosts, per_host))
        client = ControlClient(Settings(redis_url=url, app=app))
        stack.callback(client.client.close)
        wait_until(lambda: len(client.live()) == size, 30, f"{size} listeners")
        groups = {"requester": me, "listeners": fleet.pids, "redis": [redis_pid]}
        samplers = [Sampler(functools.partial(drainctl_ping, client, size), groups)]
        if with_celery:
            workers = stack.enter_context(CeleryWorkers(url, size))
            control = control_app(url).control
            groups = {"requester": me, "workers": workers.pids, "redis": [redis_pid]}
            samplers.append(Sampler(functools.partial(celery_ping, control, size), groups))
        interleave(samplers, pick(200, 200 if size <= 4 else 50))
        argv = [str(BIN / "drainctl"), "--redis-url", url, "--app", app, "ping"]
        ours = {
            "listeners": size,
            "processes": hosts,
            "library": latency(samplers[0].samples),
            "cpu_per_request": samplers[0].cpu_per_call(),
            "cli": median_ms(time_command(argv, pick(10, 3))),
        }
        progress(f"drainctl ping to {size}: p50 {ours['library']['p50_ms']} ms")
        if not with_celery:
            return {"drainctl": ours}
        theirs = celery_figures(url, samplers[1], workers, control)
    return {"drainctl": ours, "celery": theirs}


def celery_figures(
    url: str, limited: Sampler, workers: CeleryWorkers, control: Any
) -> dict[str, Any]:
    """The interleaved ``limit=N`` figures, then the default call and the CLI, one by one."""
    argv = [str(BIN / "celery"), "-A", "_celery_app", "inspect", "ping"]
    figures = {
        "workers": workers.count,
        "start_s": round(workers.start_s, 1),
        "control_ping_limit": latency(limited.samples),
        "cpu_per_request": limited.cpu_per_call(),
        "control_ping_default": median_ms(timed(control.ping, pick(5, 2))),
        "inspect_ping_cli": median_ms(
            time_command(argv, pick(3, 1), env=worker_env(url), warmup=0)
        ),
    }
    p50 = figures["control_ping_limit"]["p50_ms"]
    progress(f"celery ping to {workers.count}: limit p50 {p50} ms")
    return figures


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
    celery_sizes = pick([1, 4, 50, 200], [1, 4])
    with redis_server() as server:
        pid = server.process.pid if server.process else 0
        runs = {str(n): measure(server.url, pid, n, n in celery_sizes) for n in LAYOUTS}
    ours = {n: run["drainctl"] for n, run in runs.items()}
    theirs = {n: run["celery"] for n, run in runs.items() if "celery" in run}
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
    for size in LAYOUTS:
        if size not in celery_sizes:
            result["celery"][str(size)] = {
                "skipped": "quick mode: 50 or 200 Celery workers take 0.5-1 min to start"
            }
    return result


def _target(value: float | None, at_least: float) -> dict[str, Any]:
    return {"ratio": value, "met": value is not None and value >= at_least}


if __name__ == "__main__":
    standalone(run)
