"""Soak: 100,000 signed pings to one listener process; failures, memory growth, keys left.

The listener runs in its own process (examples/fake_jobs.py via tests/host_app.py, doing short
jobs meanwhile) on a private redis-server. After 1,000 warm-up pings (bounded caches filled),
resident memory is read, then again after the soak; the app's drainctl key count is read after
registration and once the last nonces have expired. ``--quick`` soaks 10,000 instead. The anchor
is the issue's budget: less than 2 MB of growth, no failure, the key count back to its start.

Run alone: ``.venv/bin/python scripts/benchmarks/soak.py [--quick]`` prints the JSON.
"""

from __future__ import annotations

from typing import Any

from _common import new_app, pick, progress, redis_server, standalone

from tests.soak import soak

RSS_BUDGET_MB = 2.0


def run() -> dict[str, Any]:
    """Soak one listener and compare with the budget."""
    pings = pick(100_000, 10_000)
    progress(f"soak: {pings} signed pings to one listener")
    with redis_server() as server:
        figures = soak(server.url, new_app("soak"), pings)
    return figures | {
        "anchor_rss_growth_budget_mb": RSS_BUDGET_MB,
        "within_budget": figures["rss_growth_mb"] < RSS_BUDGET_MB
        and figures["failures"] == 0
        and figures["keys_at_end"] == figures["keys_at_start"],
    }


if __name__ == "__main__":
    standalone(run)
