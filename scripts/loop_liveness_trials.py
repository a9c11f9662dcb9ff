"""Repeat the hand-written worker fault scenarios and count duplicates and misses.

Each trial runs one scenario of ``tests/loop_scenarios.py`` (a GIL-holding job, a SIGSTOP, a cut
link, a SIGKILL) on a fresh app against a private redis-server, with real worker processes, and
prints one JSON line per scenario: trials, duplicates (runs beyond one), misses (jobs that never
completed), peer recoveries of a live owner's job, trials whose fault ended too early to count.

    .venv/bin/python scripts/loop_liveness_trials.py --trials 10 [--scenario gil_hold ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import uuid
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drainctl.config import Settings  # after the path set-up above
from tests.loop_scenarios import SCENARIOS, ScenarioInvalid
from tests.redis_server import RedisServer
from tests.workers import Harness


def trial(server: RedisServer, scenario: str, log_dir: Path) -> dict[str, int]:
    """One run of one scenario; its counts."""
    app = f"trial-{uuid.uuid4().hex[:8]}"
    settings = Settings(redis_url=server.url, app=app, heartbeat_interval=0.5, block_timeout=2.0)
    client = redis.Redis.from_url(server.url)
    harness = Harness(settings, client, log_dir)
    try:
        outcome = SCENARIOS[scenario](harness)
        runs, recovered = outcome.runs, outcome.recovered_by_peer
    except ScenarioInvalid:
        return {"duplicates": 0, "misses": 0, "stolen": 0, "invalid": 1}
    except AssertionError:  # the job never completed within the scenario's wait
        runs, recovered = 0, False
    finally:
        harness.close()
        client.close()
    stolen = recovered and scenario != "sigkill"
    counts = {"duplicates": max(0, runs - 1), "misses": int(runs == 0), "stolen": int(stolen)}
    return {**counts, "invalid": 0}


def main() -> None:
    """Parse arguments, run the trials, print the counts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    args = parser.parse_args()
    server = RedisServer().start()
    try:
        with tempfile.TemporaryDirectory() as logs:
            for scenario in args.scenario or list(SCENARIOS):
                totals = {"duplicates": 0, "misses": 0, "stolen": 0, "invalid": 0}
                for _ in range(args.trials):
                    for key, value in trial(server, scenario, Path(logs)).items():
                        totals[key] += value
                print(json.dumps({"scenario": scenario, "trials": args.trials, **totals}))
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
