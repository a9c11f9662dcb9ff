"""Celery beat across failures: drainctl's scheduler against celery-redbeat, in the same run.

Each scheduler runs as real ``celery beat`` processes (an entry every 0.2 s, no worker: the
broker queue is the ledger, and each message's ``origin`` names the beat process that sent it)
on a private redis-server, with its own defaults (drainctl: lease TTL 15 s; redbeat: lock
timeout 5 x ``beat_max_loop_interval`` = 25 min):

- **failover**: beat A sends, beat B waits beside it; A is SIGKILLed. Seconds until B's first send
  (None if it did not send within the cap).
- **zombie**: beat A (release v1) keeps running when beat B (v2) starts. Over the window after
  B's start: sends, slots due, extra sends (sends beyond the slots due, so duplicates), and
  whether the new release sent at all. For drainctl also the exact duplicates (the same due time
  sent twice, from its ``drainctl_due_ms`` header).

If celery-redbeat is not installed (it is in the ``dev`` extra), plain ``celery beat``
(no lock at all) is the anchor and ``anchor`` says so. Run alone:
``.venv/bin/python scripts/benchmarks/beat.py [--quick]``.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from _common import BIN, HERE, new_app, pick, progress, reap, redis_server, standalone, wait_until

TICK_S = 0.2


class Beats:
    """``celery beat`` processes of one scheduler for one app; the queue they send to."""

    def __init__(self, scheduler: str, broker: str) -> None:
        self.scheduler = scheduler
        self.broker = broker
        self.app = new_app(f"beat-{scheduler}")
        self.client = redis.Redis.from_url(broker)
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, release: str, **env: str) -> subprocess.Popen[bytes]:
        full_env = {
            **os.environ,
            "DRAINCTL_BENCH_BROKER": self.broker,
            "BENCH_BEAT_SCHEDULER": self.scheduler,
            "BENCH_BEAT_APP": self.app,
            "BENCH_BEAT_TICK": str(TICK_S),
            "PYTHONPATH": str(HERE),
            "DRAINCTL_APP": self.app,
            "DRAINCTL_REDIS_URL": self.broker,
            "DRAINCTL_RELEASE": release,
            "DRAINCTL_PROCESS_TYPE": "beat",
            **env,
        }
        # Plain celery beat keeps its shelve file here; the others ignore it.
        shelve = Path(tempfile.gettempdir()) / f"{self.app}-{len(self.processes)}-schedule"
        argv = [str(BIN / "celery"), "-A", "_beat_app", "beat", "-l", "WARNING", "-s", str(shelve)]
        process = subprocess.Popen(
            argv, cwd=HERE, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.processes.append(process)
        return process

    def messages(self) -> list[dict[str, Any]]:
        """The headers of every message sent so far, oldest first."""
        raw = self.client.lrange(f"beatq-{self.app}", 0, -1)
        return [json.loads(message)["headers"] for message in reversed(raw)]

    def sent_by(self, process: subprocess.Popen[bytes]) -> int:
        """Messages whose ``origin`` is that process."""
        origin = f"gen{process.pid}@"
        return sum(1 for h in self.messages() if str(h.get("origin", "")).startswith(origin))

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
        reap(self.processes, 10)


def failover(scheduler: str, broker: str, cap_s: float) -> float | None:
    """Seconds from the holder's SIGKILL to the other beat's first send."""
    beats = Beats(scheduler, broker)
    try:
        first = beats.start("v1")
        wait_until(lambda: beats.sent_by(first) >= 5, 60, f"{scheduler}: the first beat sending")
        second = beats.start("v1")
        time.sleep(pick(5.0, 3.0))  # the second beat is up and waiting
        first.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        while time.monotonic() - killed < cap_s:
            if beats.sent_by(second):
                return round(time.monotonic() - killed, 2)
            time.sleep(0.05)
        return None
    finally:
        beats.close()


def zombie(scheduler: str, broker: str, window_s: float) -> dict[str, Any]:
    """Both releases running for ``window_s`` after the new one starts."""
    beats = Beats(scheduler, broker)
    try:
        old = beats.start("v1")
        wait_until(lambda: beats.sent_by(old) >= 5, 60, f"{scheduler}: the old beat sending")
        before = len(beats.messages())
        started = time.monotonic()
        new = beats.start("v2")
        time.sleep(window_s)
        elapsed = time.monotonic() - started
        messages = beats.messages()
        sent = len(messages) - before
        slots = round(elapsed / TICK_S)
        due = collections.Counter(h.get("drainctl_due_ms") for h in messages[before:])
        figures: dict[str, Any] = {
            "window_s": round(elapsed, 1),
            "slots_due": slots,
            "sends": sent,
            "extra_sends": max(0, sent - slots - 1),
            "new_release_sent": beats.sent_by(new),
            "old_release_sent_after_new_start": sent - beats.sent_by(new),
        }
        if scheduler == "drainctl":
            figures["exact_duplicates"] = sum(n - 1 for n in due.values() if n > 1)
        return figures
    finally:
        beats.close()


def run() -> dict[str, Any]:
    """Failover time and zombie duplicates, drainctl's scheduler and the anchor."""
    anchor = "redbeat" if importlib.util.find_spec("redbeat") else "plain"
    cap_s = pick(60.0, 25.0)
    window_s = pick(20.0, 8.0)
    results: dict[str, Any] = {}
    with redis_server() as server:
        for scheduler in ("drainctl", anchor):
            progress(f"beat: {scheduler} failover (cap {cap_s:.0f} s)")
            took = failover(scheduler, server.url, cap_s)
            progress(f"beat: {scheduler} zombie ({window_s:.0f} s)")
            results[scheduler] = {
                "failover_first_send_s": took,
                "failover_capped_at_s": cap_s,
                "zombie": zombie(scheduler, server.url, window_s),
            }
    return {
        "benchmark": "beat",
        "tick_s": TICK_S,
        "anchor": anchor,
        "drainctl": results["drainctl"],
        f"anchor_{anchor}": results[anchor],
    }


if __name__ == "__main__":
    standalone(run)
