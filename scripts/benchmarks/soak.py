"""Soak: 100,000 signed pings to one listener process; failures, memory growth, keys left.

The listener runs in its own process (tests/host_app.py, doing short jobs meanwhile) on a
private redis-server. After 1,000 warm-up pings (bounded caches filled), resident memory is
read, then again after the soak; the app's drainctl key count is read after registration and
once the last nonces have expired. ``DRAINCTL_BENCH_QUICK=1`` soaks 10,000 instead.

Run alone: ``.venv/bin/python scripts/benchmarks/soak.py`` prints the JSON.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.redis_server import RedisServer  # noqa: E402
from tests.soak import soak  # noqa: E402

PINGS = 100_000
QUICK_PINGS = 10_000


def run() -> dict[str, Any]:
    """Soak one listener; the anchor is the 2 MB growth budget the issue sets."""
    pings = QUICK_PINGS if os.environ.get("DRAINCTL_BENCH_QUICK") == "1" else PINGS
    server = RedisServer().start()
    try:
        figures = soak(server.url, f"soak-{uuid.uuid4().hex[:8]}", pings)
    finally:
        server.cleanup()
    return figures | {
        "anchor_rss_growth_budget_mb": 2.0,
        "within_budget": figures["rss_growth_mb"] < 2.0
        and figures["failures"] == 0
        and figures["keys_at_end"] == figures["keys_at_start"],
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
