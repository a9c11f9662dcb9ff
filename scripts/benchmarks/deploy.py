"""The whole deploy of the demo scenario: `drainctl deploy` against a plain `git push`.

The demo's main act (scripts/demo_deploys.py) on a private redis-server: examples/demoapp
(clock, worker, producer) on the local Heroku-like platform, a new commit deployed while an 8 s
job runs, once with plain `git push` and once with `drainctl deploy`. Reported: each run's
phases and total, the time drainctl adds beyond the plain push, and what each run lost or
repeated (from the app's ledgers). One run each: it takes minutes, so it is skipped by --quick.
"""

from __future__ import annotations

import sys
from typing import Any

from _common import ROOT, quick, redis_server, standalone

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def total(run: dict[str, Any]) -> float:
    """Seconds from the deploy command to the new release verified: the sum of its phases."""
    return round(sum(v for v in run["phases_s"].values() if v is not None), 3)


def run() -> dict[str, Any]:
    """Both deploys of the demo, their totals and the time drainctl adds."""
    if quick():
        return {"skipped": "quick mode: the two demo deploys take minutes"}
    from scripts.demo_deploys import story

    with redis_server() as server:
        runs = {r["mode"]: r | {"total_s": total(r)} for r in story(server.url)}
    plain, ours = runs["git-push"], runs["drainctl"]
    return {
        "runs": runs,
        "added_over_git_push_s": round(ours["total_s"] - plain["total_s"], 3),
    }


if __name__ == "__main__":
    standalone(run)
