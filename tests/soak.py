"""Many pings to one listener in a real subprocess: failures, memory growth, keys left behind.

Shared by the soak test (a smaller count) and ``scripts/benchmarks/soak.py`` (100,000 pings).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from drainctl.channel import ControlClient
from drainctl.config import Settings
from drainctl.protocol import Command
from tests.host_app import HostProcess
from tests.polling import wait_for

SOAK_SECRET = "soak-secret"
_MB = 1024 * 1024


def count_keys(client: redis.Redis, app: str) -> int:
    """How many drainctl keys the app has right now."""
    return sum(1 for _ in client.scan_iter(match=f"drainctl:{{{app}}}:*", count=1000))


def soak(redis_url: str, app: str, pings: int, *, warmup: int = 1000) -> dict[str, Any]:
    """Send ``warmup`` then ``pings`` signed pings to one listener subprocess; report figures.

    Memory is measured after the warm-up, once the listener's bounded caches are full, so the
    growth reflects leaks and not start-up. The key count is taken after registration and
    again once the last nonces have expired.
    """
    client = redis.Redis.from_url(redis_url)
    with tempfile.TemporaryDirectory() as tmp:
        host = HostProcess(redis_url, app, Path(tmp) / "journal", secret=SOAK_SECRET)
        try:
            control = ControlClient(
                Settings(redis_url=redis_url, app=app, secrets=(SOAK_SECRET,)), client=client
            )
            wait_for(control.live, what="the listener's registration")
            keys_at_start = count_keys(client, app)
            failures = sum(not control.send(Command.PING, timeout=2).ok for _ in range(warmup))
            rss_start = host.rss()
            latencies, started = [], time.monotonic()
            for _ in range(pings):
                outcome = control.send(Command.PING, timeout=2)
                failures += not outcome.ok
                latencies.append(outcome.elapsed)
            elapsed = time.monotonic() - started
            rss_end = host.rss()
            keys_after = count_keys(client, app)
            wait_for(lambda: count_keys(client, app) <= keys_at_start, 15, "keys to expire")
            keys_at_end = count_keys(client, app)
        finally:
            host.stop()
            client.close()
    return {
        "pings": pings,
        "warmup": warmup,
        "failures": failures,
        "median_ms": round(statistics.median(latencies) * 1000, 3),
        "pings_per_s": round(pings / elapsed, 1),
        "rss_start_mb": round(rss_start / _MB, 2),
        "rss_growth_mb": round((rss_end - rss_start) / _MB, 3),
        "keys_at_start": keys_at_start,
        "keys_right_after": keys_after,
        "keys_at_end": keys_at_end,
    }
