"""The whole deploy of the demo scenario: `drainctl deploy` against a plain `git push`.

The demo's main act (scripts/demo_deploys.py) on a private redis-server: on the local Heroku-like
platform, the app before drainctl deployed twice with plain `git push`, and examples/demoapp
deployed twice with `drainctl deploy` (the first while an 8 s job runs, the second leaving a
zombie clock, which `drainctl deploy` names and fails after its zombie grace). Reported: each
run's deploy times, the time drainctl adds to the first deploy beyond the plain push, and what
each run lost or repeated (from the app's ledgers). It takes minutes, so it is skipped by --quick.
"""

from __future__ import annotations

import sys
from typing import Any

from _common import ROOT, quick, redis_server, standalone

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def named(deploys: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The two deploys by name, so the report's table shows them."""
    return dict(zip(("mid_work", "zombie_clock"), deploys, strict=True))


def first_deploy(run: dict[str, Any]) -> float:
    """Seconds of the first deploy: from the command to its return (verified, for drainctl)."""
    return float(run["deploys"]["mid_work"]["seconds"])


def run() -> dict[str, Any]:
    """Both deploys of the demo, their totals and the time drainctl adds."""
    if quick():
        return {"skipped": "quick mode: the two demo deploys take minutes"}
    from scripts.demo_deploys import story

    with redis_server() as server:
        runs = {r["mode"]: r | {"deploys": named(r["deploys"])} for r in story(server.url)}
    plain, ours = runs["git-push"], runs["drainctl"]
    return {
        "runs": runs,
        "added_over_git_push_s": round(first_deploy(ours) - first_deploy(plain), 3),
    }


if __name__ == "__main__":
    standalone(run)
