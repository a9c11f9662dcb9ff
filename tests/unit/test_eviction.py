"""Which maxmemory settings can evict drainctl's keys (every one of which has a TTL)."""

from __future__ import annotations

import pytest

from drainctl.eviction import eviction_risk


@pytest.mark.parametrize(
    ("policy", "maxmemory", "risk"),
    [
        ("noeviction", 100, None),
        ("allkeys-lru", 0, None),  # no maxmemory: nothing is ever evicted
        ("allkeys-lru", 100, "evicts any key"),
        ("allkeys-random", 100, "evicts any key"),
        ("volatile-lru", 100, "keys with a TTL"),
        ("volatile-ttl", 100, "keys with a TTL"),
    ],
)
def test_eviction_risk(policy: str, maxmemory: int, risk: str | None) -> None:
    """Only noeviction, or no maxmemory at all, keeps fences, leases and heartbeats safe."""
    found = eviction_risk({"maxmemory_policy": policy, "maxmemory": maxmemory})
    if risk is None:
        assert found is None
    else:
        assert found is not None
        assert risk in found
        assert "heroku redis:maxmemory" in found
