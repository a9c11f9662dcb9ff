"""CLI start-up: wall time of ``drainctl --help`` and ``drainctl status`` against ``celery --help``.

Each run is a fresh process, as a user would type it; the commands take turns, so background
load on the machine hits all of them alike. ``python -c pass`` is the floor every
Python CLI pays. ``drainctl status`` talks to a private redis-server with one live listener.
"""

from __future__ import annotations

import compileall
import sys
from pathlib import Path
from typing import Any

from _common import (
    BIN,
    ListenerFleet,
    median_ms,
    new_app,
    pick,
    progress,
    ratio,
    redis_server,
    run_command,
    standalone,
    time_command,
)

import drainctl as drainctl_package


def alternate_commands(commands: dict[str, list[str]], runs: int) -> dict[str, list[float]]:
    """Wall times of each command, run in turn so that background load hits all of them alike."""
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for argv in commands.values():
        run_command(argv)  # warm the file cache
    for _ in range(runs):
        for name, argv in commands.items():
            samples[name] += time_command(argv, 1, warmup=0)
    return samples


def run() -> dict[str, Any]:
    """Median wall times and the two targets."""
    # As pip does on install (Celery's files were compiled so): an editable checkout would
    # otherwise recompile every changed module on each start when PYTHONDONTWRITEBYTECODE is set.
    compileall.compile_dir(Path(drainctl_package.__file__).parent, quiet=1)
    drainctl = str(BIN / "drainctl")
    with redis_server() as server:
        app = new_app()
        with ListenerFleet(server.url, app, 1, 1):
            commands = {
                "python_floor": [sys.executable, "-c", "pass"],
                "drainctl_help": [drainctl, "--help"],
                "celery_help": [str(BIN / "celery"), "--help"],
                "drainctl_status": [drainctl, "--redis-url", server.url, "--app", app, "status"],
            }
            samples = alternate_commands(commands, pick(15, 5))
    result: dict[str, Any] = {name: median_ms(times) for name, times in samples.items()}
    help_ms = result["drainctl_help"]["median_ms"]
    faster = ratio(result["celery_help"]["median_ms"], help_ms)
    result["ratios"] = {"celery_help_vs_drainctl_help": faster}
    result["targets"] = {
        "drainctl_help_under_150ms": {"value_ms": help_ms, "met": help_ms < 150},
        "drainctl_help_5x_faster_than_celery_help": {
            "ratio": faster,
            "met": faster is not None and faster >= 5,
        },
    }
    progress(f"drainctl --help {help_ms} ms, {faster}x faster than celery --help")
    return result


if __name__ == "__main__":
    standalone(run)
