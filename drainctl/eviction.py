"""Whether Redis may evict drainctl's keys under memory pressure, and the warning that says so.

Every drainctl key carries a TTL, so any ``maxmemory-policy`` but ``noeviction`` may drop them
when ``maxmemory`` is reached: ``allkeys-*`` evicts any key, ``volatile-*`` exactly the keys with
a TTL. A fence evicted mid-deploy, a lease or a heartbeat gone: each changes what drainctl does.
With ``noeviction`` Redis refuses writes instead, which drainctl reports (exit 6).
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from drainctl.config import mask_url

logger = logging.getLogger(__name__)

SAFE_POLICY = "noeviction"
HEROKU_HINT = "on Heroku: heroku redis:maxmemory REDIS_URL --policy noeviction"


def eviction_risk(memory_info: dict[str, Any]) -> str | None:
    """Why this server may evict drainctl's keys (from ``INFO memory``), or None if it will not."""
    policy = str(memory_info.get("maxmemory_policy", SAFE_POLICY))
    if policy == SAFE_POLICY or not memory_info.get("maxmemory"):
        return None  # without a maxmemory nothing is evicted, whatever the policy
    kind = "any key" if policy.startswith("allkeys") else "keys with a TTL, as all of drainctl's"
    return (
        f"maxmemory-policy is {policy}: under memory pressure Redis evicts {kind}, so a "
        f"deploy's fence, a clock's lease or a heartbeat can vanish; use {SAFE_POLICY} "
        f"({HEROKU_HINT})"
    )


def warn_if_evicting(client: redis.Redis, url: str) -> None:
    """Log the eviction risk once (a listener calls it at start); never raises.

    A listener's ACL user may lack INFO: then nothing is said (``drainctl doctor`` checks it).
    """
    try:
        risk = eviction_risk(client.info("memory"))
    except Exception as exc:  # an ACL refusal, an outage: not this warning's business
        logger.debug("could not read the eviction policy: %s", exc)
        return
    if risk is not None:
        logger.warning("Redis at %s: %s", mask_url(url), risk)
