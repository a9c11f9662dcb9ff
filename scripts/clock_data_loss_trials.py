"""Repeat the clock data-loss scenarios and count duplicated and missed runs.

Each trial starts a holder and a same-release standby (``examples/demoapp/clock.py``, ``tick``
every 100 ms, lease TTL 3 s) on a private redis-server, restarts it without its data (also
SIGKILLing the holder in the second scenario), lets them fire 30 more runs and reads the ledger,
kept on a second redis-server. Prints one JSON line per scenario.

    .venv/bin/python scripts/clock_data_loss_trials.py --trials 10 [--scenario data_loss ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.clock_scenarios import SCENARIOS, TwoClocks  # after the path set-up above
from tests.redis_server import RedisServer


def run(scenario: str, trials: int, ledger: RedisServer, logs: Path) -> dict[str, object]:
    """``trials`` runs of one scenario; the totals."""
    totals = {"runs": 0, "duplicates": 0, "missed": 0, "trials_with_duplicates": 0}
    for _ in range(trials):
        server = RedisServer().start()
        clocks = TwoClocks(server, ledger.url, logs)
        try:
            outcome = SCENARIOS[scenario](clocks)
        finally:
            clocks.close()
            server.cleanup()
        totals["runs"] += outcome.runs
        totals["duplicates"] += outcome.duplicates
        totals["missed"] += outcome.missed
        totals["trials_with_duplicates"] += outcome.duplicates > 0
    return {"scenario": scenario, "trials": trials, **totals}


def main() -> None:
    """Parse arguments, run the trials, print the counts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    args = parser.parse_args()
    ledger = RedisServer().start()
    try:
        with tempfile.TemporaryDirectory() as logs:
            for scenario in args.scenario or list(SCENARIOS):
                print(json.dumps(run(scenario, args.trials, ledger, Path(logs))), flush=True)
    finally:
        ledger.cleanup()


if __name__ == "__main__":
    main()
