"""Repeat failovers under real drainctl processes and count duplicates and misses.

Scenarios (see ``tests/failover_scenarios.py``): ``sentinel_clock`` (the master SIGKILLed under
two clocks firing every 100 ms), ``sentinel_clock_lagging`` (the same, promoting a replica that
missed the last 10 runs), ``sentinel_drain`` (SIGKILLed during a drain), ``cluster_drain``
(CLUSTER FAILOVER of the app's master during a drain). A fresh Sentinel set-up per trial; one
6-node cluster for all its trials. Prints one JSON line per scenario.

    .venv/bin/python scripts/failover_trials.py --trials 10 [--scenario cluster_drain ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# After the path set-up above.
from tests.failover_scenarios import Count, cluster_drain, sentinel_clock, sentinel_drain
from tests.redis_cluster import RedisCluster, SentinelSetup
from tests.redis_server import RedisServer


def sentinel_trials(trial: Callable[[SentinelSetup], Count], trials: int) -> list[Count]:
    counts = []
    for _ in range(trials):
        setup = SentinelSetup().start()
        try:
            counts.append(trial(setup))
        finally:
            setup.cleanup()
    return counts


def scenario_runs(name: str, trials: int, logs: Path) -> list[Count]:
    if name == "cluster_drain":
        cluster = RedisCluster().start()
        try:
            return [cluster_drain(cluster, logs) for _ in range(trials)]
        finally:
            cluster.cleanup()
    if name == "sentinel_drain":
        return sentinel_trials(lambda setup: sentinel_drain(setup, logs), trials)
    ledger = RedisServer().start()
    lagging = name == "sentinel_clock_lagging"
    try:
        return sentinel_trials(
            lambda setup: sentinel_clock(setup, ledger.url, logs, lagging=lagging), trials
        )
    finally:
        ledger.cleanup()


SCENARIOS = ("sentinel_clock", "sentinel_clock_lagging", "sentinel_drain", "cluster_drain")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--scenario", action="append", choices=SCENARIOS)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="drainctl-failover-") as logs:
        for name in options.scenario or SCENARIOS:
            counts = scenario_runs(name, options.trials, Path(logs))
            totals = {
                "scenario": name,
                "trials": len(counts),
                "seen": sum(c.seen for c in counts),
                "duplicates": sum(c.duplicates for c in counts),
                "missed": sum(c.missed for c in counts),
                "trials_with_duplicates": sum(c.duplicates > 0 for c in counts),
            }
            print(json.dumps(totals), flush=True)


if __name__ == "__main__":
    main()
