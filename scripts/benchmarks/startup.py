"""CLI start-up: wall time of ``drainctl --help`` and ``drainctl status`` against ``celery --help``.

Each run is a fresh process, as a user would type it. ``python -c pass`` is the floor every
Python CLI pays. ``drainctl status`` talks to a private redis-server with one live listener.
"""

from __future__ import annotations

import sys
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
    standalone,
    time_command,
)


def run() -> dict[str, Any]:
    """Median wall times and the two targets."""
    runs = pick(20, 5)
    drainctl = str(BIN / "drainctl")
    result: dict[str, Any] = {
        "python_floor": median_ms(time_command([sys.executable, "-c", "pass"], runs)),
        "drainctl_help": median_ms(time_command([drainctl, "--help"], runs)),
        "celery_help": median_ms(time_command([str(BIN / "celery"), "--help"], pick(10, 3))),
    }
    with redis_server() as server:
        app = new_app()
        with ListenerFleet(server.url, app, 1, 1):
            argv = [drainctl, "--redis-url", server.url, "--app", app, "status"]
            result["drainctl_status"] = median_ms(time_command(argv, runs))
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
