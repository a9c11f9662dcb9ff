"""Where a ping's CPU goes: cProfile of the requester and of a listener under a ping flood.

Not a benchmark (profiling slows what it measures, so ``scripts/bench`` does not run it):
``.venv/bin/python scripts/benchmarks/_profile.py [PINGS] [LISTENERS]`` starts a private
redis-server and LISTENERS listener processes (4), the first one with its serve thread under
cProfile, sends PINGS pings (5000) through ``ControlClient.send`` under cProfile, and prints
the top entries of both profiles by own time, per ping.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

from _common import ListenerFleet, new_app, redis_server, wait_until

from drainctl import Command, ControlClient, Settings

TOP = 15


def flood(url: str, app: str, pings: int, listeners: int) -> cProfile.Profile:
    """``pings`` pings to every listener, under a profiler."""
    client = ControlClient(Settings(redis_url=url, app=app))
    wait_until(lambda: len(client.live()) == listeners, 30, f"{listeners} listeners")
    for _ in range(200):  # warm-up: script loaded, caches filled
        client.send(Command.PING, timeout=5)
    # CPU time of this thread, not wall time: waiting for replies costs no CPU.
    profile = cProfile.Profile(time.thread_time)
    profile.enable()
    for _ in range(pings):
        client.send(Command.PING, timeout=5)
    profile.disable()
    client.client.close()
    return profile


def top(stats: pstats.Stats, title: str, pings: int) -> str:
    """The heaviest functions by own time, in microseconds per ping."""
    out = io.StringIO()
    total = stats.total_tt  # type: ignore[attr-defined]
    out.write(f"== {title}: {total / pings * 1e6:.0f} us of CPU per ping (profiled)\n")
    rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)  # type: ignore[attr-defined]
    for (path, line, name), (_, calls, own, cumulative, _) in rows[:TOP]:
        where = f"{Path(path).name}:{line}({name})"
        out.write(
            f"{own / pings * 1e6:8.1f} us own {cumulative / pings * 1e6:8.1f} us cum "
            f"{calls / pings:6.1f} calls  {where}\n"
        )
    return out.getvalue()


def main() -> None:
    pings = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    listeners = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    with tempfile.TemporaryDirectory() as tmp, redis_server() as server:
        dump = str(Path(tmp) / "listener.prof")
        app = new_app("profile")
        with (
            ListenerFleet(server.url, app, 1, 1, "--profile", dump),
            ListenerFleet(server.url, app, listeners - 1, 1) if listeners > 1 else _null(),
        ):
            requester = flood(server.url, app, pings, listeners)
        print(top(pstats.Stats(requester), "requester", pings))
        print(top(pstats.Stats(dump), "listener serve thread", pings))


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    main()
